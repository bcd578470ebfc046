import Foundation
import PSTestSupport
import XCTest

/// The deployment files give every process what it needs: workers load the data themselves, and a host-side
/// psctl against the compose cluster needs the compose token.
final class DeploymentFilesTests: XCTestCase {
    private func read(_ relative: String) throws -> String {
        try String(contentsOf: TestPaths.packageRoot.appendingPathComponent(relative), encoding: .utf8)
    }

    func test_kubernetesWorkers_mountTheDataVolume_likeTheServer() throws {
        let workers = try read("cluster/k8s/workers.yaml")
        let server = try read("cluster/k8s/psserver.yaml")
        for (name, text) in [("workers.yaml", workers), ("psserver.yaml", server)] {
            XCTAssertTrue(text.contains("mountPath: /data"), "\(name) does not mount the data volume at /data")
            XCTAssertTrue(text.contains("- name: data"), "\(name) has no data volume")
        }
    }

    /// Scale-out in compose: the coordinator waits for two servers and psserver2 joins it under an address the
    /// workers can reach.
    func test_compose_runsACoordinatorAndOneJoinedServer() throws {
        let compose = try read("cluster/docker-compose.yml")
        XCTAssertTrue(compose.contains("psserver --host 0.0.0.0 --port 7000 --servers 2"), "coordinator --servers 2")
        XCTAssertTrue(compose.contains("  psserver2:\n"), "no psserver2 service")
        XCTAssertTrue(
            compose.contains("--join psserver:7000 --advertise psserver2:7001"), "psserver2 must join and advertise")
        XCTAssertEqual(compose.components(separatedBy: "\"psworker\", \"--server\", \"psserver:7000\"").count - 1, 3)
    }

    /// Scale-out in Kubernetes: the extra servers are a StatefulSet behind their own headless Service, each pod
    /// advertising its stable name from the downward API; the coordinator takes `--servers`.
    func test_kubernetes_joinedServers_areAStatefulSetWithStableNames() throws {
        let joined = try read("cluster/k8s/psserver-joined.yaml")
        XCTAssertTrue(joined.contains("kind: StatefulSet"))
        XCTAssertTrue(joined.contains("clusterIP: None"), "headless Service")
        XCTAssertTrue(joined.contains("serviceName: psserver-joined"))
        XCTAssertTrue(joined.contains("- $(POD_NAME).psserver-joined:7001"), "advertise the stable name")
        XCTAssertTrue(joined.contains("fieldPath: metadata.name"), "POD_NAME from the downward API")
        XCTAssertTrue(joined.contains("- --join\n            - $(PS_SERVER)"), "join the coordinator")
        XCTAssertTrue(try read("cluster/k8s/psserver.yaml").contains("--servers \"$PS_SERVERS\""))
        XCTAssertTrue(try read("cluster/k8s/kustomization.yaml").contains("- psserver-joined.yaml"))
        let config = try read("cluster/k8s/configmap.yaml")
        XCTAssertTrue(
            config.contains("PS_SERVERS: \"2\"") && joined.contains("replicas: 1"), "PS_SERVERS = 1 + replicas")
    }

    /// netns.sh documents and implements SERVERS (joined servers on hosts s2..sM).
    func test_netnsScript_startsJoinedServers() throws {
        let script = try read("cluster/netns.sh")
        XCTAssertTrue(script.contains("SERVERS=${SERVERS:-1}"))
        XCTAssertTrue(script.contains("--join \"$SUBNET.1:$PORT\""))
        XCTAssertTrue(try read("cluster/README.md").contains("| `SERVERS` |"), "cluster/README.md documents SERVERS")
    }

    func test_clusterReadme_hostSidePsctl_passesTheComposeToken() throws {
        let readme = try read("cluster/README.md")
        XCTAssertTrue(readme.contains("PS_TOKEN=demo-token psctl status --server 127.0.0.1:7000"), "host psctl line")
        XCTAssertTrue(readme.contains("What every node needs"))
    }
}
