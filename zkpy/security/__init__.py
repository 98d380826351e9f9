"""Security: TLS for client connections and x509 identities (zkpy.security.tls)."""
