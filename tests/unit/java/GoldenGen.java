// Prints golden jute bytes for tests/unit/golden_records.json, serialized by ZooKeeper's own
// Java classes (Debian zookeeper 3.8.0 jars). Regenerate with tests/unit/java/regen_golden.sh.
// Every case here has a twin Python value in tests/unit/test_codec.py (GOLDEN_VALUES); keep
// the two in step.

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.apache.jute.BinaryOutputArchive;
import org.apache.jute.Record;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.MultiOperationRecord;
import org.apache.zookeeper.MultiResponse;
import org.apache.zookeeper.Op;
import org.apache.zookeeper.OpResult;
import org.apache.zookeeper.data.ACL;
import org.apache.zookeeper.data.ClientInfo;
import org.apache.zookeeper.data.Id;
import org.apache.zookeeper.data.Stat;
import org.apache.zookeeper.data.StatPersisted;
import org.apache.zookeeper.proto.*;
import org.apache.zookeeper.txn.*;
import org.apache.zookeeper.server.persistence.FileHeader;
import org.apache.zookeeper.server.quorum.QuorumPacket;

public class GoldenGen {
    static final Map<String, String[]> out = new LinkedHashMap<>();

    interface Body { void write(BinaryOutputArchive a) throws Exception; }

    static void add(String name, String cls, Body body) throws Exception {
        ByteArrayOutputStream bos = new ByteArrayOutputStream();
        BinaryOutputArchive a = BinaryOutputArchive.getArchive(bos);
        body.write(a);
        StringBuilder sb = new StringBuilder();
        for (byte b : bos.toByteArray()) sb.append(String.format("%02x", b & 0xff));
        out.put(name, new String[] {cls, sb.toString()});
    }

    static void rec(String name, Record r) throws Exception {
        add(name, r.getClass().getSimpleName(), a -> r.serialize(a, "r"));
    }

    static byte[] b(String s) { return s.getBytes(StandardCharsets.UTF_8); }

    static Stat stat() {
        return new Stat(0x100000001L, 0x100000002L, 1700000000123L, 1700000000456L,
                        5, 7, 1, 0x8000000000000000L, 11, 3, 0x100000009L);
    }

    public static void main(String[] args) throws Exception {
        byte[] zero16 = new byte[16];
        byte[] pw = new byte[16];
        for (int i = 0; i < 16; i++) pw[i] = (byte) (i * 17);
        List<ACL> acls = Arrays.asList(new ACL(31, new Id("world", "anyone")),
                                       new ACL(1, new Id("digest", "user:pw/hash=")));
        ConnectRequest creq = new ConnectRequest(0, 0x1234567890L, 30000, 0L, zero16);
        rec("ConnectRequest", creq);
        add("ConnectRequest+readOnly", "ConnectRequest", a -> {
            creq.serialize(a, "connect"); a.writeBool(true, "readOnly"); });
        ConnectResponse cresp = new ConnectResponse(0, 4000, 0x0100017f00000001L, pw);
        rec("ConnectResponse", cresp);
        add("ConnectResponse+readOnly", "ConnectResponse", a -> {
            cresp.serialize(a, "connect"); a.writeBool(false, "readOnly"); });
        rec("RequestHeader", new RequestHeader(7, 4));
        rec("ReplyHeader", new ReplyHeader(7, 0x100000005L, -101));
        rec("Stat", stat());
        rec("StatPersisted", new StatPersisted(1, 2, 3, 4, 5, 6, 7, -1L, 9));
        rec("CreateRequest", new CreateRequest("/app/\u00fc\u00df/\ud83d\ude00", b("hello"), acls, 3));
        rec("CreateRequest/nulls", new CreateRequest("/n", null, null, 0));
        rec("CreateResponse", new CreateResponse("/app/node0000000001"));
        rec("Create2Response", new Create2Response("/app/node0000000001", stat()));
        rec("GetDataRequest", new GetDataRequest("/zookeeper/config", true));
        rec("GetDataResponse", new GetDataResponse(new byte[] {0, 1, (byte) 0xff}, stat()));
        rec("GetDataResponse/null", new GetDataResponse(null, new Stat()));
        rec("SetDataRequest", new SetDataRequest("/a", b("x"), -1));
        rec("SetDataResponse", new SetDataResponse(stat()));
        rec("ExistsRequest", new ExistsRequest("/e", false));
        rec("GetChildren2Response",
            new GetChildren2Response(Arrays.asList("a", "b", "\u00e7", ""), stat()));
        rec("GetChildrenResponse/empty", new GetChildrenResponse(new ArrayList<>()));
        rec("GetACLResponse", new GetACLResponse(acls, stat()));
        rec("SetACLRequest", new SetACLRequest("/acl", acls, 2));
        rec("WatcherEvent", new WatcherEvent(3, 3, "/a/b"));
        rec("SetWatches", new SetWatches(0x200000010L, Arrays.asList("/d1", "/d2"),
                                         Arrays.asList("/e1"), new ArrayList<>()));
        rec("SetWatches2", new SetWatches2(0x200000010L, Arrays.asList("/d1"), new ArrayList<>(),
                                           Arrays.asList("/c1", "/c2"), Arrays.asList("/p"),
                                           Arrays.asList("/r1", "/r2")));
        rec("MultiHeader", new MultiHeader(-1, true, -1));
        rec("MultiHeader/op", new MultiHeader(1, false, -1));
        rec("ErrorResponse", new ErrorResponse(-101));
        rec("CreateTTLRequest", new CreateTTLRequest("/ttl", b("t"), acls, 5, 60000L));
        rec("AuthPacket", new AuthPacket(0, "digest", b("user:secret")));
        rec("ReconfigRequest", new ReconfigRequest("server.4=h:1:2;3", null, null, -1L));
        rec("CheckWatchesRequest", new CheckWatchesRequest("/w", 3));
        rec("AddWatchRequest", new AddWatchRequest("/w", 1));
        rec("GetAllChildrenNumberResponse", new GetAllChildrenNumberResponse(42));
        rec("GetEphemeralsResponse", new GetEphemeralsResponse(Arrays.asList("/e1", "/e2")));
        rec("WhoAmIResponse", new WhoAmIResponse(Arrays.asList(
            new ClientInfo("ip", "127.0.0.1"), new ClientInfo("digest", "bob"))));
        rec("TxnHeader", new TxnHeader(0x0100017f00000001L, 9, 0x300000001L, 1700000000999L, 1));
        rec("CreateTxn", new CreateTxn("/t", b("v"), acls, true, 4));
        rec("CreateTTLTxn", new CreateTTLTxn("/t", b("v"), acls, 4, 1000L));
        rec("CloseSessionTxn", new CloseSessionTxn(Arrays.asList("/eph1", "/eph2")));
        rec("MultiTxn", new MultiTxn(Arrays.asList(new Txn(2, b("ab")), new Txn(-1, new byte[0]))));
        rec("TxnDigest", new TxnDigest(2, -5L));
        rec("FileHeader", new FileHeader(0x5a4b4c47, 2, 0L));
        rec("QuorumPacket", new QuorumPacket(2, 0x100000001L, b("q"),
                                             Arrays.asList(new Id("ip", "10.0.0.1"))));

        // multi request exactly as the Java client sends it (ZooKeeper.multi -> MultiOperationRecord)
        List<ACL> open = Arrays.asList(new ACL(31, new Id("world", "anyone")));
        MultiOperationRecord mreq = new MultiOperationRecord(Arrays.asList(
            Op.create("/m1", b("d1"), open, CreateMode.PERSISTENT),
            Op.create("/m2", b(""), open, CreateMode.EPHEMERAL_SEQUENTIAL),
            Op.create("/m3", b("ttl"), open, CreateMode.PERSISTENT_WITH_TTL, 5000L),
            Op.create("/m4", null, open, CreateMode.CONTAINER),
            Op.delete("/m5", -1),
            Op.setData("/m6", b("new"), 3),
            Op.check("/m7", 1)));
        add("multi_request", "multi", a -> mreq.serialize(a, "req"));
        MultiOperationRecord mread = new MultiOperationRecord(Arrays.asList(
            Op.getChildren("/r"), Op.getData("/r/a")));
        add("multiread_request", "multi", a -> mread.serialize(a, "req"));

        MultiResponse mresp = new MultiResponse();
        mresp.add(new OpResult.CreateResult("/m1"));
        mresp.add(new OpResult.CreateResult("/m2", stat()));
        mresp.add(new OpResult.DeleteResult());
        mresp.add(new OpResult.SetDataResult(stat()));
        mresp.add(new OpResult.CheckResult());
        mresp.add(new OpResult.GetDataResult(b("gd"), stat()));
        mresp.add(new OpResult.GetChildrenResult(Arrays.asList("x", "y")));
        add("multi_response", "multi", a -> mresp.serialize(a, "rsp"));
        MultiResponse mfail = new MultiResponse();
        mfail.add(new OpResult.ErrorResult(0));
        mfail.add(new OpResult.ErrorResult(-101));
        mfail.add(new OpResult.ErrorResult(-2));
        add("multi_response_failed", "multi", a -> mfail.serialize(a, "rsp"));

        // watch notification body as NIOServerCnxn.process(WatchedEvent) sends it (3.9: real zxid)
        add("notification", "notification", a -> {
            new ReplyHeader(-1, 0x100000007L, 0).serialize(a, "header");
            new WatcherEvent(4, 3, "/parent").serialize(a, "event"); });

        StringBuilder sb = new StringBuilder("{\n");
        int i = 0;
        for (Map.Entry<String, String[]> e : out.entrySet()) {
            sb.append(String.format("  \"%s\": {\"record\": \"%s\", \"hex\": \"%s\"}%s\n",
                e.getKey(), e.getValue()[0], e.getValue()[1], ++i < out.size() ? "," : ""));
        }
        sb.append("}\n");
        System.out.print(sb);
    }
}
