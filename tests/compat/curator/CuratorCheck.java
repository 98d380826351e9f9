/*
 * Apache Curator recipes against one ZooKeeper-compatible server: compiled and run by
 * tests/compat/test_curator.py (Debian's libcurator-recipes-java jars, Curator 5.4).
 *
 * Usage: java CuratorCheck HOST:PORT [BASE_PATH]
 *
 * Prints one line per check, "OK <name>" or "FAIL <name> <reason>", and exits 1 when any
 * check failed (2 when the watchdog fired). Checks, in this order:
 *   containers            creatingParentContainersIfNeeded() creates the missing parents as
 *                         CONTAINER nodes and CreateMode.CONTAINER works; their stat shows
 *                         ephemeralOwner 0 as ZooKeeper shows it to clients (the server-side
 *                         marker 0x8000000000000000 must not leak). Reaping is tested elsewhere
 *                         (tests/compat/test_containers_ttl.py).
 *                         When the server answers UNIMPLEMENTED here, every other check would fail
 *                         the same way: they are reported as "FAIL <name> skipped: ..." at once.
 *   mutex                 InterProcessMutex: 3 threads, each with its own CuratorFramework
 *                         (own session), bump a shared counter with a read-sleep-write that
 *                         loses updates unless the lock excludes; nobody else holds it meanwhile.
 *   leader_latch          LeaderLatch: exactly one leader among 3 sessions, all agree who; after
 *                         the leader closes its latch, exactly one of the other two takes over.
 *   curator_cache         CuratorCache (persistent recursive watch on 3.6+ servers): create,
 *                         update and delete of a child arrive as created/changed/deleted events.
 *   path_children_cache   PathChildrenCache (classic child and data watches): CHILD_ADDED,
 *                         CHILD_UPDATED, CHILD_REMOVED for the same sequence.
 * Curator creates the recipes' parent nodes as CONTAINER nodes (createContainer op 19), so every
 * check depends on container support.
 */

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.cache.ChildData;
import org.apache.curator.framework.recipes.cache.CuratorCache;
import org.apache.curator.framework.recipes.cache.CuratorCacheListener;
import org.apache.curator.framework.recipes.cache.PathChildrenCache;
import org.apache.curator.framework.recipes.cache.PathChildrenCacheEvent;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.curator.utils.CloseableUtils;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.data.Stat;

public class CuratorCheck {
    static final int SESSION_MS = 10000;
    static final int CONNECT_MS = 5000;
    static final long WAIT_S = 10;          // any single wait in a check
    static final long WATCHDOG_S = 60;      // the whole program

    static String connect;
    static String base;
    static int failures = 0;

    interface Check { void run() throws Exception; }

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: CuratorCheck HOST:PORT [BASE_PATH]");
            System.exit(64);
        }
        connect = args[0];
        base = args.length > 1 ? args[1] : "/curator-check";

        // A hung recipe must not hang the test: report and leave with a distinct code.
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(WATCHDOG_S * 1000);
                System.out.println("FAIL watchdog program still running after " + WATCHDOG_S + "s");
                System.out.flush();
                Runtime.getRuntime().halt(2);
            } catch (InterruptedException e) { /* finished in time */ }
        });
        watchdog.setDaemon(true);
        watchdog.start();

        boolean containers = run("containers", CuratorCheck::checkContainers);
        String[] names = {"mutex", "leader_latch", "curator_cache", "path_children_cache"};
        Check[] checks = {CuratorCheck::checkMutex, CuratorCheck::checkLeaderLatch,
                          CuratorCheck::checkCuratorCache, CuratorCheck::checkPathChildrenCache};
        for (int i = 0; i < names.length; i++) {
            if (!containers && containersUnimplemented) {
                // Each would wait out its timeouts on the same error: ~20 s for nothing.
                failures++;
                System.out.println("FAIL " + names[i] + " skipped: server does not serve containers");
            } else {
                run(names[i], checks[i]);
            }
        }

        System.out.flush();
        // Curator/ZooKeeper leave non-daemon threads behind on some failure paths: exit explicitly.
        System.exit(failures == 0 ? 0 : 1);
    }

    static boolean run(String name, Check check) {
        try {
            check.run();
            System.out.println("OK " + name);
            System.out.flush();
            return true;
        } catch (Throwable t) {
            failures++;
            String why = t.getMessage() == null ? "" : t.getMessage();
            if (!(t instanceof CheckFailed)) why = t.getClass().getName() + ": " + why;
            Throwable cause = t.getCause();
            if (cause != null) why += " (cause: " + cause + ")";
            System.out.println("FAIL " + name + " " + why.replace('\n', ' '));
            System.err.println("--- " + name + " stack trace:");
            t.printStackTrace();
        }
        System.out.flush();
        return false;
    }

    static class CheckFailed extends Exception {
        private static final long serialVersionUID = 1L;
        CheckFailed(String msg) { super(msg); }
    }

    static void check(boolean ok, String msg) throws CheckFailed {
        if (!ok) throw new CheckFailed(msg);
    }

    static CuratorFramework client() throws Exception {
        CuratorFramework c = CuratorFrameworkFactory.builder()
                .connectString(connect)
                .sessionTimeoutMs(SESSION_MS)
                .connectionTimeoutMs(CONNECT_MS)
                .retryPolicy(new ExponentialBackoffRetry(100, 3))
                .build();
        c.start();
        if (!c.blockUntilConnected((int) WAIT_S, TimeUnit.SECONDS)) {
            c.close();
            throw new CheckFailed("client not connected to " + connect + " within " + WAIT_S + "s");
        }
        return c;
    }

    static void closeAll(List<? extends java.io.Closeable> things) {
        for (int i = things.size() - 1; i >= 0; i--) CloseableUtils.closeQuietly(things.get(i));
    }

    /** Children of path; none when the path is gone (a container reaper may take it). */
    static List<String> children(CuratorFramework c, String path) throws Exception {
        try {
            return c.getChildren().forPath(path);
        } catch (KeeperException.NoNodeException e) {
            return new ArrayList<>();
        }
    }

    // ---------------------------------------------------------------------------------------

    static boolean containersUnimplemented = false;
    // ZooKeeper stores containers with ephemeralOwner Long.MIN_VALUE but hands clients 0
    // (DataTree.copyStat: only NORMAL ephemeral owners are shown).
    static final long CONTAINER_OWNER_SEEN = 0;

    static void checkContainers() throws Exception {
        final String top = base + "/containers";
        final String mid = top + "/p";
        final String leaf = mid + "/leaf";
        CuratorFramework c = client();
        try {
            c.create().creatingParentContainersIfNeeded().withMode(CreateMode.EPHEMERAL).forPath(leaf);
            for (String p : new String[] {base, top, mid}) {
                Stat st = c.checkExists().forPath(p);
                check(st != null, p + " missing");
                check(st.getEphemeralOwner() == CONTAINER_OWNER_SEEN,
                      "container " + p + " shows ephemeralOwner 0x" + Long.toHexString(st.getEphemeralOwner()));
            }
            long session = c.getZookeeperClient().getZooKeeper().getSessionId();
            Stat st = c.checkExists().forPath(leaf);
            check(st != null && st.getEphemeralOwner() == session, leaf + " is not our ephemeral");
            c.create().withMode(CreateMode.CONTAINER).forPath(top + "/direct");
            st = c.checkExists().forPath(top + "/direct");
            check(st != null, "CreateMode.CONTAINER node missing after create");
            check(st.getEphemeralOwner() == CONTAINER_OWNER_SEEN,
                  "CreateMode.CONTAINER node shows ephemeralOwner 0x" + Long.toHexString(st.getEphemeralOwner()));
            c.delete().forPath(leaf);
            c.delete().forPath(top + "/direct");
        } catch (KeeperException.UnimplementedException e) {
            containersUnimplemented = true;
            throw new CheckFailed("UNIMPLEMENTED: " + e.getMessage());
        } finally {
            c.close();
        }
    }

    // ---------------------------------------------------------------------------------------

    static volatile int counter = 0;

    static void checkMutex() throws Exception {
        final int threads = 3, rounds = 5;
        final String path = base + "/mutex";
        List<CuratorFramework> clients = new ArrayList<>();
        try {
            for (int i = 0; i < threads; i++) clients.add(client());
            final AtomicInteger inside = new AtomicInteger();
            final AtomicInteger overlaps = new AtomicInteger();
            final AtomicReference<Throwable> error = new AtomicReference<>();
            final CountDownLatch start = new CountDownLatch(1);
            List<Thread> workers = new ArrayList<>();
            counter = 0;
            for (int i = 0; i < threads; i++) {
                final InterProcessMutex mutex = new InterProcessMutex(clients.get(i), path);
                Thread t = new Thread(() -> {
                    try {
                        start.await();
                        for (int r = 0; r < rounds; r++) {
                            if (!mutex.acquire(WAIT_S, TimeUnit.SECONDS))
                                throw new CheckFailed("acquire timed out after " + WAIT_S + "s");
                            try {
                                if (inside.incrementAndGet() != 1) overlaps.incrementAndGet();
                                int seen = counter;       // read-sleep-write: loses updates
                                Thread.sleep(5);          // unless the lock excludes
                                counter = seen + 1;
                                inside.decrementAndGet();
                            } finally {
                                mutex.release();
                            }
                        }
                    } catch (Throwable e) {
                        error.compareAndSet(null, e);
                    }
                }, "mutex-" + i);
                workers.add(t);
                t.start();
            }
            start.countDown();
            for (Thread t : workers) t.join(3 * WAIT_S * 1000);
            for (Thread t : workers) check(!t.isAlive(), t.getName() + " still running");
            if (error.get() != null) {
                Throwable e = error.get();
                throw new CheckFailed("worker failed: " + e);
            }
            check(overlaps.get() == 0, overlaps.get() + " times two holders inside the lock");
            check(counter == threads * rounds,
                  "counter " + counter + " != " + (threads * rounds) + " (lost updates)");
            List<String> left = children(clients.get(0), path);
            check(left.isEmpty(), "lock nodes left after all released: " + left);
        } finally {
            closeAll(clients);
        }
    }

    // ---------------------------------------------------------------------------------------

    static List<LeaderLatch> leaders(List<LeaderLatch> latches) {
        List<LeaderLatch> out = new ArrayList<>();
        for (LeaderLatch l : latches) if (l.getState() == LeaderLatch.State.STARTED && l.hasLeadership()) out.add(l);
        return out;
    }

    /** Waits until exactly one started latch leads and stays so for a moment; returns it. */
    static LeaderLatch oneLeader(List<LeaderLatch> latches) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(WAIT_S);
        List<LeaderLatch> now = leaders(latches);
        while (System.nanoTime() < deadline) {
            now = leaders(latches);
            if (now.size() == 1) {
                Thread.sleep(300);   // a second leader would show up within this
                List<LeaderLatch> again = leaders(latches);
                if (again.size() == 1 && again.get(0) == now.get(0)) return now.get(0);
                now = again;
            }
            check(now.size() <= 1, now.size() + " leaders at once");
            Thread.sleep(50);
        }
        throw new CheckFailed("expected exactly one leader within " + WAIT_S + "s, have " + now.size());
    }

    static void checkLeaderLatch() throws Exception {
        final String path = base + "/latch";
        List<CuratorFramework> clients = new ArrayList<>();
        List<LeaderLatch> latches = new ArrayList<>();
        try {
            for (int i = 0; i < 3; i++) {
                CuratorFramework c = client();
                clients.add(c);
                LeaderLatch l = new LeaderLatch(c, path, "p" + i);
                latches.add(l);
                l.start();
            }
            LeaderLatch first = oneLeader(latches);
            for (LeaderLatch l : latches) {
                String who = l.getLeader().getId();
                check(who.equals(first.getId()),
                      l.getId() + " sees leader " + who + ", but " + first.getId() + " leads");
            }
            check(children(clients.get(0), path).size() == 3, "expected 3 latch nodes");

            first.close();
            List<LeaderLatch> rest = new ArrayList<>(latches);
            rest.remove(first);
            LeaderLatch second = oneLeader(rest);
            check(second != first, "the closed latch still leads");
            check(!first.hasLeadership(), "closed latch " + first.getId() + " still has leadership");
            check(second.getLeader().getId().equals(second.getId()),
                  "new leader " + second.getId() + " sees " + second.getLeader().getId());
            check(children(clients.get(0), path).size() == 2,
                  "expected 2 latch nodes after the leader closed");
        } finally {
            for (LeaderLatch l : latches) {
                if (l.getState() == LeaderLatch.State.STARTED) CloseableUtils.closeQuietly(l);
            }
            closeAll(clients);
        }
    }

    // ---------------------------------------------------------------------------------------

    static String expect(BlockingQueue<String> events, String want) throws Exception {
        String got = events.poll(WAIT_S, TimeUnit.SECONDS);
        check(got != null, "no event within " + WAIT_S + "s, expected '" + want + "'");
        check(got.equals(want), "expected event '" + want + "', got '" + got + "'");
        return got;
    }

    static String data(ChildData d) {
        return d.getData() == null ? "null" : new String(d.getData());
    }

    static void checkCuratorCache() throws Exception {
        final String path = base + "/cache";
        final String child = path + "/a";
        CuratorFramework c = client();
        CuratorCache cache = null;
        try {
            c.create().creatingParentContainersIfNeeded().forPath(path);
            final BlockingQueue<String> events = new LinkedBlockingQueue<>();
            final CountDownLatch initialized = new CountDownLatch(1);
            CuratorCacheListener listener = CuratorCacheListener.builder()
                    .forCreates(n -> { if (n.getPath().equals(child)) events.add("created " + data(n)); })
                    .forChanges((o, n) -> {
                        if (n.getPath().equals(child)) events.add("changed " + data(o) + "->" + data(n));
                    })
                    .forDeletes(o -> { if (o.getPath().equals(child)) events.add("deleted " + data(o)); })
                    .forInitialized(initialized::countDown)
                    .build();
            cache = CuratorCache.build(c, path);
            cache.listenable().addListener(listener);
            cache.start();
            check(initialized.await(WAIT_S, TimeUnit.SECONDS), "cache not initialized within " + WAIT_S + "s");

            c.create().forPath(child, "1".getBytes());
            expect(events, "created 1");
            c.setData().forPath(child, "2".getBytes());
            expect(events, "changed 1->2");
            check(cache.get(child).map(CuratorCheck::data).orElse("missing").equals("2"),
                  "cache holds " + cache.get(child).map(CuratorCheck::data).orElse("missing") + " for " + child);
            c.delete().forPath(child);
            expect(events, "deleted 2");
            check(!cache.get(child).isPresent(), child + " still in the cache after delete");
            String extra = events.poll(200, TimeUnit.MILLISECONDS);
            check(extra == null, "unexpected extra event '" + extra + "'");
        } finally {
            if (cache != null) CloseableUtils.closeQuietly(cache);
            c.close();
        }
    }

    @SuppressWarnings("deprecation")
    static void checkPathChildrenCache() throws Exception {
        final String path = base + "/pcc";
        final String child = path + "/b";
        CuratorFramework c = client();
        PathChildrenCache cache = null;
        try {
            final BlockingQueue<String> events = new LinkedBlockingQueue<>();
            cache = new PathChildrenCache(c, path, true);
            cache.getListenable().addListener((cl, e) -> {
                PathChildrenCacheEvent.Type t = e.getType();
                if (t == PathChildrenCacheEvent.Type.INITIALIZED) {
                    events.add("INITIALIZED");
                } else if (e.getData() != null) {
                    events.add(t + " " + e.getData().getPath() + " " + data(e.getData()));
                }
            });
            // The cache creates its path itself (as a container) when missing.
            cache.start(PathChildrenCache.StartMode.POST_INITIALIZED_EVENT);
            expect(events, "INITIALIZED");

            c.create().forPath(child, "x".getBytes());
            expect(events, "CHILD_ADDED " + child + " x");
            c.setData().forPath(child, "y".getBytes());
            expect(events, "CHILD_UPDATED " + child + " y");
            check(cache.getCurrentData(child) != null && data(cache.getCurrentData(child)).equals("y"),
                  "cache does not hold y for " + child);
            c.delete().forPath(child);
            expect(events, "CHILD_REMOVED " + child + " y");
            check(cache.getCurrentData().isEmpty(), "cache not empty after delete");
            String extra = events.poll(200, TimeUnit.MILLISECONDS);
            check(extra == null, "unexpected extra event '" + extra + "'");
        } finally {
            if (cache != null) CloseableUtils.closeQuietly(cache);
            c.close();
        }
    }
}
