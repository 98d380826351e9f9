// Curator over SASL DIGEST-MD5: the JAAS Client section comes from
// -Djava.security.auth.login.config, as a JVM service passes it. tests/compat/test_sasl.py runs
// this against each server and compares what it prints, one line per step:
//   <step> <result>   (result: the value read, "ok", or the exception's class name)
import java.nio.charset.StandardCharsets;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.retry.RetryOneTime;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.data.ACL;
import org.apache.zookeeper.data.ClientInfo;
import org.apache.zookeeper.data.Id;

public class CuratorSasl {
    static void step(String name, Callable<Object> body) {
        String result;
        try {
            Object value = body.call();
            result = value == null ? "ok" : value.toString();
        } catch (Exception e) {
            result = e.getClass().getSimpleName();
        }
        System.out.println(name + " " + result);
        System.out.flush();
    }

    public static void main(String[] args) throws Exception {
        String hosts = args[0];
        String path = args[1];
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(60000);
            } catch (InterruptedException e) {
                return;
            }
            System.out.println("TIMEOUT");
            System.exit(3);
        });
        watchdog.setDaemon(true);
        watchdog.start();
        CuratorFramework client = CuratorFrameworkFactory.builder().connectString(hosts)
            .sessionTimeoutMs(6000).connectionTimeoutMs(1000).retryPolicy(new RetryOneTime(100))
            .build();
        client.start();
        step("connected", () -> client.blockUntilConnected(10, TimeUnit.SECONDS));
        List<ACL> bobOnly = Collections.singletonList(
            new ACL(ZooDefs.Perms.ALL, new Id("sasl", "bob")));
        step("create", () -> client.create().withACL(bobOnly)
            .forPath(path, "curator".getBytes(StandardCharsets.UTF_8)));
        step("get", () -> new String(client.getData().forPath(path), StandardCharsets.UTF_8));
        step("acl", () -> client.getACL().forPath(path));
        step("whoami", () -> {
            StringBuilder sb = new StringBuilder();
            for (ClientInfo info : client.getZookeeperClient().getZooKeeper().whoAmI()) {
                sb.append(info.getAuthScheme()).append(':').append(info.getUser()).append(';');
            }
            return sb.toString();
        });
        client.close();
        System.exit(0);
    }
}
