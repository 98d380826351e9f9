"""Worker processes and the core's side of them.

    supervisor.py  in the core process: accepts every client connection, answers four-letter
                   words, hands sockets to the workers (SCM_RIGHTS), restarts a worker that dies
    worker.py      a worker process (`python -m zkpy.workers.worker`): its connections, their
                   watches, reads from its own LMDB read transactions; writes go to the core
    ipc.py         the messages between a worker and the core (encode / decode, and the stream
                   Channel that carries them)

Imports zkpy.server (the connections and frontend a worker runs, the core it talks to) and
zkpy.proto; zkpy.server imports it only where the core starts its workers (standalone.py).
"""
