"""JAAS login configuration files, read as the JDK's sun.security.provider.ConfigFile reads them.
Pure: parse_jaas takes the text.

    Server {
        org.apache.zookeeper.server.auth.DigestLoginModule required
        user_bob="bobsecret"        // a comment
        user_super="adminsecret";   /* another */
    };

A file is a list of sections `Name { entries } ;`; an entry is `module.Class flag key=value ...
;` with flag one of required / requisite / sufficient / optional (any case). Tokens are those of
java.io.StreamTokenizer as ConfigFile sets it up: words of letters, digits, '.', '_', '-', '$',
'*' (not starting with a digit, '.' or '-': that is a number, which no rule accepts), quoted
strings in "..." or '...' with backslash escapes, a quoted string ending at the end of its line
if unclosed; `//`, `/* */` and a lone `/` start comments. Option values get ConfigFile's
${property} expansion (${/} is "/"; an unknown property is an error). Errors name the line.
"""

from dataclasses import dataclass, field

from zkpy.errors import ConfigError

FLAGS = ("REQUIRED", "REQUISITE", "SUFFICIENT", "OPTIONAL")

_WORD_START = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ$_*")
_WORD_MORE = _WORD_START | set("0123456789.-")
_NUMBER_START = set("0123456789.-")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}

WORD, QUOTED, NUMBER, EOF = "word", "quoted", "number", "eof"


@dataclass(frozen=True)
class JaasEntry:
    module: str
    flag: str            # upper case, one of FLAGS
    options: dict = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True)
class JaasSection:
    name: str
    entries: tuple
    line: int


def _is_word_start(c):
    return c in _WORD_START or ord(c) >= 160


def _is_word_char(c):
    return c in _WORD_MORE or ord(c) >= 160


def _tokens(text, path):
    """(kind, value, line): kind WORD / QUOTED / NUMBER, a one-character operator, or EOF."""
    i, n, line = 0, len(text), 1
    while True:
        while i < n and (text[i] <= " "):
            if text[i] == "\n":
                line += 1
            i += 1
        if i >= n:
            yield EOF, None, line
            return
        c = text[i]
        if c == "/":
            if text.startswith("/*", i):
                end = text.find("*/", i + 2)
                end = n if end < 0 else end + 2
                line += text.count("\n", i, end)
                i = end
            else:  # `//` and a lone `/` (StreamTokenizer's comment character) end the line
                while i < n and text[i] not in "\r\n":
                    i += 1
            continue
        if c in "\"'":
            quote = c
            i += 1
            out = []
            while i < n and text[i] != quote and text[i] not in "\r\n":
                ch = text[i]
                if ch == "\\" and i + 1 < n:
                    nxt = text[i + 1]
                    if nxt in "01234567":
                        j = i + 1
                        digits = ""
                        limit = 3 if nxt <= "3" else 2
                        while j < n and len(digits) < limit and text[j] in "01234567":
                            digits += text[j]
                            j += 1
                        out.append(chr(int(digits, 8)))
                        i = j
                        continue
                    out.append(_ESCAPES.get(nxt, nxt))
                    i += 2
                    continue
                out.append(ch)
                i += 1
            if i < n and text[i] == quote:
                i += 1
            yield QUOTED, "".join(out), line
            continue
        if c in _NUMBER_START and not (c == "-" and (i + 1 >= n or (
                text[i + 1] not in "0123456789."))):
            j = i + 1
            while j < n and text[j] in "0123456789.":
                j += 1
            yield NUMBER, text[i:j], line
            i = j
            continue
        if _is_word_start(c):
            j = i + 1
            while j < n and _is_word_char(text[j]):
                j += 1
            yield WORD, text[i:j], line
            i = j
            continue
        yield c, c, line
        i += 1


def _expand(value, properties, path, line):
    """ConfigFile.expand: PropertyExpander over an option value."""
    if not value or "${" not in value:
        return value
    out = []
    i = 0
    n = len(value)
    p = value.find("${")
    while p != -1:
        out.append(value[i:p])
        pe = p + 2
        if pe < n and value[pe] == "{":      # ${{ ... }} is kept as it is
            pe = value.find("}}", pe)
            if pe == -1 or pe + 2 == n:
                out.append(value[p:])
                i = n
                break
            pe += 1
            out.append(value[p:pe + 1])
        else:
            pe = value.find("}", pe)
            if pe == -1:
                out.append(value[p:])
                i = n
                break
            prop = value[p + 2:pe]
            if prop == "/":
                out.append("/")
            elif prop in properties:
                out.append(properties[prop])
            else:
                raise ConfigError("unable to expand property %s" % prop, path=path, line=line)
        i = pe + 1
        p = value.find("${", i)
    out.append(value[i:])
    result = "".join(out)
    if not result:
        raise ConfigError("system property value %s expanded to an empty value" % value,
                          path=path, line=line)
    return result


def parse_jaas(text, path="<jaas>", properties=None):
    """Parse a JAAS file: {section name: JaasSection}; raises ConfigError naming path and line.

    properties: the system properties ${...} in option values may name."""
    properties = properties or {}
    tokens = _tokens(text, path)
    tok = [next(tokens)]

    def advance():
        tok[0] = next(tokens)

    def fail(message):
        return ConfigError(message, path=path, line=tok[0][2])

    def expect(what):
        kind, value, _ = tok[0]
        if kind == what:
            advance()
            return value
        found = value if kind in (WORD, QUOTED, NUMBER) else ("end of file" if kind == EOF
                                                              else kind)
        raise fail("expected [%s], found [%s]" % (what, found))

    def expect_value(what):
        kind, value, _ = tok[0]
        if kind in (WORD, QUOTED):
            advance()
            return value
        if kind == EOF:
            raise fail("expected [%s], read [end of file]" % what)
        raise fail("expected [%s], found [%s]" % (what, value if kind == NUMBER else kind))

    sections = {}
    while tok[0][0] != EOF:
        kind, name, line = tok[0]
        if kind not in (WORD, QUOTED):
            raise fail("expected [section name], found [%s]" % name)
        advance()
        expect("{")
        entries = []
        while tok[0][0] != "}":
            entry_line = tok[0][2]
            module = expect_value("module class name")
            flag = expect_value("controlFlag").upper()
            if flag not in FLAGS:
                raise fail("Invalid control flag, %s" % flag)
            options = {}
            while tok[0][0] != ";":
                key = expect_value("option key")
                expect("=")
                value_line = tok[0][2]
                value = expect_value("option value")
                options[key] = _expand(value, properties, path, value_line)
            advance()
            entries.append(JaasEntry(module, flag, options, entry_line))
        advance()
        expect(";")
        if name in sections:
            raise ConfigError("Can not specify multiple entries for %s" % name, path=path,
                              line=line)
        sections[name] = JaasSection(name, tuple(entries), line)
    return sections
