import Foundation
import PSWire
import XCTest

final class StatusDocumentTests: XCTestCase {
    private func document(withJob: Bool) -> StatusDocument {
        let job = JobDescription(
            model: "softmax", data: "digits", test: nil, labelColumn: "last", batchPerWorker: 16, epochs: 2, seed: 7,
            mode: "bsp", staleness: 0, workers: 2, trainRows: 100, featureCount: 64, classCount: 10, stepsPerEpoch: 3,
            totalSteps: 6)
        let jobStatus = StatusDocument.JobStatus(
            job: job,
            workers: [
                StatusDocument.Worker(
                    name: "w0", rank: 0, state: "live", clock: 4, pushes: 8, lastSeenSeconds: 0.25, rejoins: 1)
            ], expectedWorkers: 2, completedSteps: 4, minClock: 4, maxClock: 5, barrierWaits: 3, jobStarted: true,
            jobFinished: false, events: ["worker w1 (rank 1) declared dead: silent"], staleness: 0)
        return StatusDocument(
            mode: "bsp", optimizer: "sgd", uptimeSeconds: 1.5, connections: 3, shardCount: 2,
            shards: [
                StatusDocument.Shard(
                    index: 0, version: 4, elements: 10, pushes: 8, pulls: 9, staleDropped: 1, staleScaled: 2),
                StatusDocument.Shard(
                    index: 1, version: 4, elements: 6, pushes: 8, pulls: 9, staleDropped: 0, staleScaled: 1),
            ], tensors: [TensorShape(name: "w", shape: [4, 4])], lastCheckpoint: "/tmp/ckpt/step-4",
            jobStatus: withJob ? jobStatus : nil)
    }

    func test_json_withJob_roundTripsAndKeepsSnakeCaseKeysAtTopLevel() throws {
        let original = document(withJob: true)
        let json = original.json()
        XCTAssertEqual(try StatusDocument.decode(json: json), original)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        XCTAssertEqual(object["completed_steps"] as? Int, 4)
        XCTAssertEqual(object["stale_dropped"] as? Int, 1, "summed over shards")
        XCTAssertEqual(object["stale_scaled"] as? Int, 3)
        XCTAssertEqual(object["last_checkpoint"] as? String, "/tmp/ckpt/step-4")
        XCTAssertEqual((object["job"] as? [String: Any])?["totalSteps"] as? Int, 6)
        let worker = try XCTUnwrap((object["workers"] as? [[String: Any]])?.first)
        XCTAssertEqual(worker["last_seen_s"] as? Double, 0.25)
        XCTAssertEqual((object["shards"] as? [[String: Any]])?.first?["bytes"] as? Int, 40)
    }

    func test_json_plainStore_hasNoJobFieldsAndDecodesWithoutJob() throws {
        let json = document(withJob: false).json()
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        XCTAssertNil(object["job"])
        XCTAssertNil(object["workers"])
        XCTAssertNil(try StatusDocument.decode(json: json).jobStatus)
    }

    func test_json_servers_absentWithOneServer_roundTripWithSeveral() throws {
        let single = document(withJob: true).json()
        XCTAssertFalse(single.contains("\"servers\""), "one server: no servers key, the document is as before")
        var scaled = document(withJob: true)
        let placement = ServerPlacement(servers: [.init(address: "", shards: 2), .init(address: "b:7001", shards: 3)])
        scaled.servers = StatusDocument.Server.list(placement, selfIndex: 1)
        XCTAssertEqual(
            scaled.servers,
            [
                StatusDocument.Server(index: 0, address: "", firstShard: 0, shards: 2, isSelf: false),
                StatusDocument.Server(index: 1, address: "b:7001", firstShard: 2, shards: 3, isSelf: true),
            ])
        let json = scaled.json()
        XCTAssertTrue(json.contains(#"{"address":"b:7001","first_shard":2,"index":1,"self":true,"shards":3}"#), json)
        XCTAssertEqual(try StatusDocument.decode(json: json), scaled)
    }

    func test_json_tables_absentWithoutSparseTables_roundTripWithOne() throws {
        let dense = document(withJob: true).json()
        XCTAssertFalse(dense.contains("\"tables\""), "no sparse tables: no tables key, the document is as before")
        XCTAssertNil(try StatusDocument.decode(json: dense).tables, "an older document decodes without tables")
        var sparse = document(withJob: true)
        sparse.tables = [
            StatusDocument.Table(
                name: "emb", rows: 1000, width: 8, optimizer: "adam", rowsTouched: 17, updatesApplied: 5, pushes: 10,
                pulls: 12)
        ]
        let json = sparse.json()
        XCTAssertTrue(
            json.contains(
                #"{"name":"emb","optimizer":"adam","pulls":12,"pushes":10,"rows":1000,"rows_touched":17,"#
                    + #""updates_applied":5,"width":8}"#), json)
        XCTAssertEqual(try StatusDocument.decode(json: json), sparse)
    }

    func test_placement_shardMapAndRanges_followServerOrder() {
        let placement = ServerPlacement(servers: [.init(address: "a", shards: 1), .init(address: "b", shards: 2)])
        XCTAssertEqual(placement.totalShards, 3)
        XCTAssertEqual(placement.shardMap, ["a", "b", "b"])
        XCTAssertEqual(placement.shards(ofServer: 0), 0..<1)
        XCTAssertEqual(placement.shards(ofServer: 1), 1..<3)
    }

    func test_decode_notADocument_throws() {
        XCTAssertThrowsError(try StatusDocument.decode(json: "{\"mode\": 3}"))
    }
}
