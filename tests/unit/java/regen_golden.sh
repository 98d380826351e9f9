#!/bin/sh
# Regenerates tests/unit/golden_records.json from ZooKeeper's own Java jute classes.
# Needs a JDK (javac, Java 11+) and Debian's zookeeper package (jars in /usr/share/java).
# The tests only read the JSON; they never need Java.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
jars=${ZK_JARS:-/usr/share/java}
cp="$jars/zookeeper.jar:$jars/zookeeper-jute.jar:$jars/slf4j-api.jar:$jars/slf4j-nop.jar"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
javac -nowarn -cp "$cp" -d "$out" "$here/GoldenGen.java"
java -cp "$out:$cp" GoldenGen > "$here/../golden_records.json.tmp"
mv "$here/../golden_records.json.tmp" "$here/../golden_records.json"
echo "wrote $here/../golden_records.json"
