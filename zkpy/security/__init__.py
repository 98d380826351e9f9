"""Client authentication beyond `addauth digest`: what ZooKeeper 3.8 reads from its JVM.

Pure modules (no I/O, clock or randomness of their own; the callers pass text and nonces):
  jvmflags     SERVER_JVMFLAGS / JVMFLAGS, conf/zookeeper-env.sh and conf/java.env, as
               zkServer.sh builds the java command line: the -D system properties zkpy-server
               honours.
  jaas         JAAS login configuration files (`Server { ...DigestLoginModule required
               user_bob="..."; };`) as the JDK's ConfigFile reads them.
  digest_md5   the server side of SASL DIGEST-MD5 (RFC 2831), as the JDK's DigestMD5Server
               answers ZooKeeper's clients (realm zk-sasl-md5, qop auth).
  sasl         a connection's SASL login and the `sasl` ACL scheme's rules
               (SASLAuthenticationProvider, SaslServerCallbackHandler, KerberosName).
(The parts with I/O are beside the server: zkpy.server.tls -- TLS stores and contexts, x509
identities -- and zkpy.server.sasl_gssapi -- SASL GSSAPI through MIT Kerberos.)
"""
