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

    func test_clusterReadme_hostSidePsctl_passesTheComposeToken() throws {
        let readme = try read("cluster/README.md")
        XCTAssertTrue(readme.contains("PS_TOKEN=demo-token psctl status --server 127.0.0.1:7000"), "host psctl line")
        XCTAssertTrue(readme.contains("What every node needs"))
    }
}
