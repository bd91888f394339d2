package dataflare.opensearch;

import org.opensearch.env.Environment;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.common.settings.Settings;
import org.opensearch.plugins.Plugin;

import java.lang.reflect.Constructor;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.List;

/**
 * Starts a real single-node OpenSearch (2.19.x) in-process for DataFlare's tests (tests/support/servers.py):
 * HTTP on 127.0.0.1 only, no security plugin, data under os.home. Built by tests/opensearch/build.
 * System properties: os.http.port (default 9200), os.transport.port (default 9300), os.home (default: new temp dir).
 * Prints "OPENSEARCH_HTTP_READY http://127.0.0.1:PORT" once node.start() has returned.
 */
public final class OsNode {

    public static void main(String[] args) throws Exception {
        long t0 = System.nanoTime();
        int httpPort = Integer.getInteger("os.http.port", 9200);
        int transportPort = Integer.getInteger("os.transport.port", 9300);
        String homeProp = System.getProperty("os.home");
        Path home = homeProp != null ? Paths.get(homeProp) : Files.createTempDirectory("os-home");
        for (String d : new String[] { "config", "plugins", "modules", "data", "logs" }) {
            Files.createDirectories(home.resolve(d));
        }
        Settings settings = Settings.builder()
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("cluster.name", "dataflare-test")
            .put("node.name", "dataflare-test-node")
            .put("network.host", "127.0.0.1")            // loopback only (bind + publish)
            .put("http.port", httpPort)
            .put("transport.port", transportPort)
            .put("http.type", "netty4")
            .put("transport.type", "netty4")
            .put("discovery.type", "single-node")
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .put("action.auto_create_index", true)
            .build();
        Environment env = InternalSettingsPreparer.prepareEnvironment(
            settings, Collections.emptyMap(), home.resolve("config"), () -> "dataflare-test-node");

        List<Class<? extends Plugin>> plugins = new ArrayList<>();
        // class names differ across versions (XxxPlugin in older, XxxModulePlugin in newer releases)
        plugins.add(firstClass("org.opensearch.transport.Netty4ModulePlugin", "org.opensearch.transport.Netty4Plugin"));
        Class<? extends Plugin> analysis = firstClassOrNull(
            "org.opensearch.analysis.common.CommonAnalysisModulePlugin", "org.opensearch.analysis.common.CommonAnalysisPlugin");
        if (analysis != null) plugins.add(analysis);

        Node node = newNode(env, plugins);
        node.start();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try { node.close(); } catch (Exception e) { e.printStackTrace(); }
        }, "dataflare-test-shutdown"));
        System.out.printf("OPENSEARCH_HTTP_READY http://127.0.0.1:%d (home=%s, %.1f s after JVM main)%n",
            httpPort, home, (System.nanoTime() - t0) / 1e9);
        System.out.flush();
        Thread.currentThread().join(); // keep the JVM alive until SIGTERM
    }

    /** Node's classpath-plugin constructor is protected: call it reflectively (2.x signature: Collection<Class<? extends Plugin>>). */
    @SuppressWarnings("unchecked")
    private static Node newNode(Environment env, List<Class<? extends Plugin>> plugins) throws Exception {
        Constructor<Node> c = Node.class.getDeclaredConstructor(Environment.class, Collection.class, boolean.class);
        String pt = c.getGenericParameterTypes()[1].getTypeName();
        if (pt.contains("PluginInfo")) {
            throw new IllegalStateException("This OpenSearch (3.x) wants Collection<PluginInfo>; use 2.19.x or adapt: " + pt);
        }
        c.setAccessible(true);
        return c.newInstance(env, plugins, true);
    }

    private static Class<? extends Plugin> firstClass(String... names) throws ClassNotFoundException {
        Class<? extends Plugin> c = firstClassOrNull(names);
        if (c == null) throw new ClassNotFoundException(String.join(" / ", names));
        return c;
    }

    @SuppressWarnings("unchecked")
    private static Class<? extends Plugin> firstClassOrNull(String... names) {
        for (String n : names) {
            try { return (Class<? extends Plugin>) Class.forName(n); } catch (ClassNotFoundException ignored) { }
        }
        return null;
    }
}
