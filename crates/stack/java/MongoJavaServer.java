// A MongoDB wire-protocol server with a real `_id` index, for polyrepl's stack and tests:
// mongo-java-server (de.bwaldvogel, in-memory backend) bound to HOST:PORT until SIGTERM.
//
// Run as a single-file program with the jars scripts/install-deps fetched (it copies this file next
// to them; `polyrepl stack up --service mongo-java` writes its own copy, built into polyrepl, under the
// state directory and runs that):
//   java -cp '<tools>/mongo-java-server-1.46.0/lib/*' MongoJavaServer.java HOST PORT [VERSION]
//
// VERSION (default 5.0) is the MongoDB version the server announces. mongo-java-server itself knows
// only 3.6 and 4.0 (wire versions 6 and 7), but the Rust driver polyrepl uses refuses anything below
// MongoDB 4.4 (wire version 9). polyrepl's MongoDB sink treats the server as the version it announces:
// update/delete commands (no client bulkWrite) from 4.4 on, and from 5.0 on `$`-prefixed and dotted
// field names stored as they are. Below 5.0 the sink stores JSON with such keys as text in binary
// subtype 0x80, which mongo-java-server 1.46.0 keeps as subtype 0 (its BsonDecoder reads 0x80 as
// generic BinData): with 5.0 that case does not arise.
// Data lives in memory only: a restart starts empty.

import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import java.util.List;
import java.util.concurrent.CountDownLatch;

public class MongoJavaServer {
    /// MongoDB versions this launcher can announce, with their wire versions.
    enum Announced implements MongoVersion {
        V4_4(List.of(4, 4, 0), 9),
        V5_0(List.of(5, 0, 0), 13),
        V6_0(List.of(6, 0, 0), 17),
        V7_0(List.of(7, 0, 0), 21);

        private final List<Integer> version;
        private final int wire;

        Announced(List<Integer> version, int wire) {
            this.version = version;
            this.wire = wire;
        }

        @Override public List<Integer> getVersionArray() { return version; }
        @Override public int getWireVersion() { return wire; }

        static Announced parse(String text) {
            for (Announced a : values()) {
                if (a.toVersionString().startsWith(text)) return a;
            }
            throw new IllegalArgumentException("unknown MongoDB version to announce: " + text + " (4.4, 5.0, 6.0 or 7.0)");
        }
    }

    public static void main(String[] args) throws InterruptedException {
        if (args.length < 2 || args.length > 3) {
            System.err.println("usage: java -cp 'lib/*' MongoJavaServer.java HOST PORT [4.4|5.0|6.0|7.0]");
            System.exit(2);
        }
        String host = args[0];
        int port = Integer.parseInt(args[1]);
        Announced version = Announced.parse(args.length == 3 ? args[2] : "5.0");

        MongoServer server = new MongoServer(new MemoryBackend().version(version));
        server.bind(host, port);
        System.out.println("mongo-java-server listening on " + host + ":" + port
            + " (announcing MongoDB " + version.toVersionString() + ", wire version " + version.getWireVersion() + ")");

        // SIGTERM (and Ctrl-C) run the shutdown hooks: close the listener and the open connections,
        // then let main return.
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            server.shutdownNow();
            System.out.println("mongo-java-server stopped");
            stopped.countDown();
        }));
        stopped.await();
    }
}
