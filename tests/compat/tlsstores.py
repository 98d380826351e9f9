"""The TLS tests' certificates and stores: zkpy.testing.tlsstores (shared with the benchmark's
tls topology, zkpy.bench.servers), re-exported here under the name the tests import."""

from zkpy.testing.tlsstores import (  # noqa: F401 (re-exported)
    PASSWORD, Identity, keytool_genkeypair, keytool_import_cert, keytool_keystore,
    keytool_truststore, keytool_unavailable, make_ca, make_cert, make_crl, name, tls_cfg,
    write_crl, write_ocsp_index, write_p12, write_pem_files, write_pem_trust,
)
