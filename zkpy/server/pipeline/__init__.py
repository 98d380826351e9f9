"""The core's write pipeline, as ZooKeeper's processor chain: prep -> sync -> final.

    prep  (prep.PrepStage)   a client write -> a txn under the next zxid, validated against
                             the committed tree plus what is prepped and not applied (overlay)
    sync  (sync.SyncStage)   the txn -> the log; one fsync serves many (group commit); the txns
                             durable here AND committed (standalone: durable; ensemble: the
                             quorum) go on, in zxid order
    final (final.FinalStage) apply a batch in one LMDB write txn, commit it, then each
                             frontend gets its watch events and replies, then `committed`

Each module states what its stage may assume and what it hands on. The stages are the parts of
one object, zkpy.server.core.Core (it inherits them), and hand on through its state in zxid
order (next_zxid / overlay -> the committer and `_pending` -> durable_zxid, commit_zxid ->
last_zxid and LMDB); each module lists the state it writes. The core itself keeps the front
door (connect, request: reads, fused fast writes, sync), the sessions and the timers.
"""
