"""Load-generation tools for zkpy and any ZooKeeper-compatible server.

zkpy.bench.loadgen is the `zkpy-bench` command (wire-protocol load generator and null server);
zkpy.bench.compare turns its --json results into a table. Nothing in the server imports this
package.
"""
