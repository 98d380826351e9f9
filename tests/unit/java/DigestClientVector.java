// The JDK's own DIGEST-MD5 client (what ZooKeeper's Java client uses) against a challenge given on
// the command line: prints its response, then evaluates the server's rspauth read from stdin and
// prints "complete" when the JDK accepts it. tests/unit/test_security.py runs it against
// zkpy.security.digest_md5 (and keeps one recorded exchange as a known-answer vector).
//   java DigestClientVector.java USER PASSWORD CHALLENGE [AUTHZID]
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import javax.security.auth.callback.Callback;
import javax.security.auth.callback.NameCallback;
import javax.security.auth.callback.PasswordCallback;
import javax.security.sasl.RealmCallback;
import javax.security.sasl.Sasl;
import javax.security.sasl.SaslClient;

public class DigestClientVector {
    public static void main(String[] args) throws Exception {
        final String user = args[0];
        final String password = args[1];
        String authzid = args.length > 3 ? args[3] : null;
        SaslClient client = Sasl.createSaslClient(new String[] {"DIGEST-MD5"}, authzid,
            "zookeeper", "zk-sasl-md5", null, callbacks -> {
                for (Callback cb : callbacks) {
                    if (cb instanceof NameCallback) {
                        ((NameCallback) cb).setName(user);
                    } else if (cb instanceof PasswordCallback) {
                        ((PasswordCallback) cb).setPassword(password.toCharArray());
                    } else if (cb instanceof RealmCallback) {
                        RealmCallback rc = (RealmCallback) cb;
                        rc.setText(rc.getDefaultText());
                    }
                }
            });
        byte[] response = client.evaluateChallenge(args[2].getBytes(StandardCharsets.UTF_8));
        System.out.println(new String(response, StandardCharsets.UTF_8));
        System.out.flush();
        String rspauth = new BufferedReader(new InputStreamReader(System.in)).readLine();
        try {
            client.evaluateChallenge(rspauth.getBytes(StandardCharsets.UTF_8));
            System.out.println(client.isComplete() ? "complete" : "incomplete");
        } catch (Exception e) {
            System.out.println("refused: " + e.getMessage());
        }
    }
}
