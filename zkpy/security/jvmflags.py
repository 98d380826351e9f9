"""The JVM flags a ZooKeeper operator passes: SERVER_JVMFLAGS / JVMFLAGS, conf/zookeeper-env.sh
and conf/java.env. Pure.

zkServer.sh (through zkEnv.sh) sources `$ZOOCFGDIR/zookeeper-env.sh`, then `$ZOOCFGDIR/java.env`,
into the shell it was started from: shell fragments that usually set SERVER_JVMFLAGS or JVMFLAGS
(and ZOO_LOG_DIR, ZOOPIDFILE...). So the environment comes first, zookeeper-env.sh's assignments
over it, java.env's over both, and each file sees what the ones before it set ($SERVER_JVMFLAGS
in java.env is zookeeper-env.sh's value when it set one). zkServer.sh then runs
`java ... $JVMFLAGS QuorumPeerMain zoo.cfg` with JVMFLAGS="$SERVER_JVMFLAGS $JVMFLAGS": the
variables' words, unquoted, so split at whitespace with no quote removal. Java keeps the last of
two -D flags for one property.

The files are read here without running them: plain `NAME=value` / `export NAME=value`
assignments, with '...' and "..." quoting, backslash escapes and $NAME / ${NAME} expansion (from
earlier lines and files, else the environment). Anything else is a line zkpy cannot read: when it
could touch the JVM flags (it names JVMFLAGS, holds a -D, or sources another file) that stops the
server naming the line -- a flag asking for security must never be lost unseen -- otherwise it is
a warning.

Every property keeps where it came from (the variable, and the file and line when a line of
zookeeper-env.sh or java.env wrote it), so an error can name it.
"""

import re
from dataclasses import dataclass

from zkpy.errors import ConfigError

SERVER_FLAG_VARS = ("SERVER_JVMFLAGS", "JVMFLAGS")  # in command-line order (zkServer.sh)
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_OPERATORS = set(";&|<>()`")
# java options that take the next word as their argument
_WITH_ARGUMENT = frozenset(["-cp", "-classpath", "--class-path", "-p", "--module-path",
                            "--add-modules", "--add-opens", "--add-exports", "--add-reads"])


@dataclass(frozen=True)
class JvmProperty:
    """One -Dname=value flag."""
    name: str
    value: str
    flag: str          # the word as written
    var: str           # SERVER_JVMFLAGS or JVMFLAGS
    path: str = None   # the zookeeper-env.sh / java.env that wrote this word; None: environment
    line: int = None

    def where(self):
        if self.path is None:
            return "environment variable %s" % self.var
        return "%s:%d (%s)" % (self.path, self.line, self.var)


@dataclass(frozen=True)
class JvmFlags:
    properties: tuple = ()   # JvmProperty, in command-line order (a later one wins)
    notes: tuple = ()        # options ignored (DEBUG lines)
    warnings: tuple = ()

    def system_properties(self):
        """name -> the JvmProperty in force (the last flag for it)."""
        return {p.name: p for p in self.properties}


class _Unreadable(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# zookeeper-env.sh and java.env

# The files zkEnv.sh sources from $ZOOCFGDIR, in its order.
ENV_FILES = ("zookeeper-env.sh", "java.env")

def _logical_lines(text):
    """(line number, text) with backslash-newline continuations joined."""
    physical = text.replace("\r\n", "\n").split("\n")
    i = 0
    while i < len(physical):
        start = i
        line = physical[i]
        i += 1
        while line.endswith("\\") and (len(line) - len(line.rstrip("\\"))) % 2 == 1 \
                and i < len(physical):
            line = line[:-1] + physical[i]
            i += 1
        yield start + 1, line


def _expand(line, i, quoted, variables, environ):
    """Expand $NAME or ${NAME} at line[i] ('$'); returns (chunks, next index)."""
    j = i + 1
    if j < len(line) and line[j] == "{":
        end = line.find("}", j)
        if end < 0:
            raise _Unreadable("unterminated ${")
        name = line[j + 1:end]
        nxt = end + 1
    else:
        m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", line[j:])
        if not m:
            if j >= len(line) or line[j] in " \t\"":
                return [("$", None)], j   # a lone $ is itself
            raise _Unreadable("$%s is not a plain variable" % line[j])
        name = m.group(0)
        nxt = j + len(name)
    if not _NAME_RE.match(name):
        raise _Unreadable("${%s} is not a plain variable" % name)
    if name in variables:
        return list(variables[name]), nxt
    return [(environ.get(name, ""), None)], nxt


def _words(line, here, variables, environ):
    """Split one logical line into words; a word is (chunks, leading literal text) where chunks
    are (text, origin) pieces and the literal is the unquoted text before any quote or $."""
    words = []
    chunks = None
    lead = None      # unquoted literal prefix of the current word, None once it has ended
    i = 0
    n = len(line)

    def add(text, origin, literal):
        nonlocal chunks, lead
        if chunks is None:
            chunks, lead = [], ""
        chunks.append((text, origin))
        if lead is not None:
            if literal:
                lead += text
            else:
                lead = lead + "\0"  # stops the name=... test at this point
    while i < n:
        c = line[i]
        if c in " \t":
            if chunks is not None:
                words.append((chunks, lead))
                chunks = lead = None
            i += 1
        elif c == "#" and chunks is None:
            break
        elif c in _OPERATORS:
            raise _Unreadable("%r is shell syntax beyond plain assignments" % c)
        elif c == "\\":
            if i + 1 < n:
                add(line[i + 1], here, True)
            i += 2
        elif c == "'":
            end = line.find("'", i + 1)
            if end < 0:
                raise _Unreadable("unterminated '")
            add(line[i + 1:end], here, False)
            i = end + 1
        elif c == '"':
            i += 1
            piece = ""
            if chunks is None:
                chunks, lead = [], ""
            while True:
                if i >= n:
                    raise _Unreadable('unterminated "')
                c = line[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\" and i + 1 < n and line[i + 1] in '"\\$`':
                    piece += line[i + 1]
                    i += 2
                elif c == "`":
                    raise _Unreadable("command substitution")
                elif c == "$":
                    if i + 1 < n and line[i + 1] == "(":
                        raise _Unreadable("command substitution")
                    got, i = _expand(line, i, True, variables, environ)
                    if piece:
                        add(piece, here, False)
                        piece = ""
                    for text, origin in got:
                        add(text, origin, False)
                else:
                    piece += c
                    i += 1
            add(piece, here, False)
        elif c == "$":
            if i + 1 < n and line[i + 1] == "(":
                raise _Unreadable("command substitution")
            got, i = _expand(line, i, False, variables, environ)
            for text, origin in got:
                add(text, origin, False)
        else:
            add(c, here, True)
            i += 1
    if chunks is not None:
        words.append((chunks, lead))
    return words


def _assignment(word):
    """(name, value chunks) when the word is NAME=value, else None."""
    chunks, lead = word
    if lead is None or "=" not in lead.split("\0", 1)[0]:
        return None
    name = lead.split("=", 1)[0]
    if not _NAME_RE.match(name):
        return None
    skip = len(name) + 1
    value = []
    for text, origin in chunks:
        if skip >= len(text):
            skip -= len(text)
            continue
        value.append((text[skip:], origin))
        skip = 0
    return name, value


def _touches_flags(text):
    stripped = text.strip()
    return ("JVMFLAGS" in text or "-D" in text or stripped.startswith((". ", "source "))
            or stripped in (".", "source"))


def read_java_env(text, path, environ, variables=None):
    """Run the assignments of java.env (or zookeeper-env.sh) in order, over `variables` (what the
    files sourced before it set; updated in place): ({name: value chunks}, warnings).

    Raises ConfigError naming the line for one zkpy cannot read that could touch the flags."""
    variables = {} if variables is None else variables
    warnings = []
    name = path.rsplit("/", 1)[-1] if path else "java.env"
    for number, line in _logical_lines(text):
        here = (path, number)
        try:
            words = _words(line, here, variables, environ)
            if not words:
                continue
            first = "".join(t for t, _ in words[0][0])
            if words[0][1] == "export" and first == "export":
                words = words[1:]
                for w in words:
                    if _assignment(w) is None and not _NAME_RE.match(w[1] or ""):
                        raise _Unreadable("export of something other than NAME or NAME=value")
            elif any(_assignment(w) is None for w in words):
                raise _Unreadable("a command, not an assignment")
            for w in words:
                assigned = _assignment(w)
                if assigned is not None:
                    variables[assigned[0]] = assigned[1]
        except _Unreadable as e:
            message = ("cannot read this line without running it (%s); zkpy reads %s's "
                       "NAME=value assignments only" % (e, name))
            if _touches_flags(line):
                raise ConfigError(message + ", and this line could change the JVM flags",
                                  path=path, line=number)
            warnings.append("%s:%d: %s; line ignored" % (path, number, message))
    return variables, warnings


def _source(environ, files):
    """Every (text, path) of `files` in order, text None for a file that is not there."""
    variables = {}
    warnings = []
    for text, path in files:
        if text is not None:
            warnings += read_java_env(text, path, environ, variables)[1]
    return variables, warnings


def sourced_variables(environ, files):
    """name -> value of each variable the files [(text, path)] set, sourced in order over the
    environment (zkServer.sh's ZOO_LOG_DIR, ZOOPIDFILE...)."""
    variables, _ = _source(environ, files)
    return {name: "".join(text for text, _ in chunks) for name, chunks in variables.items()}


# ---------------------------------------------------------------------------------------------
# the flags

def _split(chunks, var):
    """Whitespace-split a variable's value: [(word, var, origin of its first character)]."""
    out = []
    word, origin = "", None
    for text, where in chunks:
        for c in text:
            if c in " \t\n":
                if word:
                    out.append((word, var, origin))
                word = ""
                continue
            if not word:
                origin = where
            word += c
    if word:
        out.append((word, var, origin))
    return out


def server_jvm_flags(environ, java_env_text=None, java_env_path=None, zookeeper_env_text=None,
                     zookeeper_env_path=None):
    """The flags zkServer.sh would pass to java: the environment first, zookeeper-env.sh over
    it, java.env over both (zkEnv.sh sources them in that order)."""
    variables, warnings = _source(environ, ((zookeeper_env_text, zookeeper_env_path),
                                            (java_env_text, java_env_path)))
    words = []
    for var in SERVER_FLAG_VARS:
        chunks = variables.get(var, [(environ.get(var, ""), None)])
        words += _split(chunks, var)
    props, notes = [], []
    skip_next = False
    for word, var, origin in words:
        path, line = origin if origin is not None else (None, None)
        if skip_next:
            skip_next = False
            continue
        if word.startswith("-D"):
            name, _, value = word[2:].partition("=")
            if not name:
                notes.append("%s: %r has no property name; ignored" % (var, word))
                continue
            props.append(JvmProperty(name, value, word, var, path, line))
        elif word.startswith("-"):
            notes.append("%s: JVM option %s ignored (zkpy is not a JVM)" % (var, word))
            skip_next = word in _WITH_ARGUMENT
        else:
            warnings.append("%s: %r is not a JVM option; ignored" % (var, word))
    return JvmFlags(tuple(props), tuple(notes), tuple(warnings))
