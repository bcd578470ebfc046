import PSServer
import PSWire
import XCTest

/// `ServerConfig.validate()`: every numeric setting is checked once at start-up, with the flag named.
final class ServerConfigTests: XCTestCase {
    func assertInvalid(
        _ change: (inout ServerConfig) -> Void, naming flag: String, file: StaticString = #filePath,
        line: UInt = #line
    ) {
        var config = ServerConfig()
        config.checkpointDirectory = "/tmp/unused"
        change(&config)
        XCTAssertThrowsError(try config.validate(), file: file, line: line) { error in
            XCTAssertTrue("\(error)".hasPrefix(flag), "\(error)", file: file, line: line)
        }
    }

    func test_validate_defaults_pass() throws {
        try ServerConfig().validate()
    }

    func test_validate_checkpointEverySecondsZeroNaNInfOrHuge_throwsNamingTheFlag() {
        for seconds in [0, -1, .nan, .infinity, 1e20] as [Double] {
            assertInvalid({ $0.checkpointEverySeconds = seconds }, naming: "--checkpoint-every-seconds")
        }
        var config = ServerConfig()
        config.checkpointDirectory = "/tmp/unused"
        config.checkpointEverySeconds = 0.5
        XCTAssertNoThrow(try config.validate())
    }

    func test_validate_workerTimeoutHugeOrNaN_throwsNamingTheFlag() {
        for seconds in [1e20, ServerConfig.maxSeconds * 2, .nan, .infinity, 0, -3] as [Double] {
            assertInvalid({ $0.workerTimeoutSeconds = seconds }, naming: "--worker-timeout")
        }
    }

    func test_validate_waitTimeoutHugeOrNaN_throwsNamingTheFlag() {
        for seconds in [1e20, .nan, -.infinity, 0] as [Double] {
            assertInvalid({ $0.waitTimeoutSeconds = seconds }, naming: "--wait-timeout")
        }
    }

    func test_validate_countsOutOfRange_throwNamingTheFlag() {
        assertInvalid({ $0.shardCount = 0 }, naming: "--shards")
        assertInvalid({ $0.shardCount = 1025 }, naming: "--shards")
        assertInvalid({ $0.maxFrameBytes = 100 }, naming: "--max-frame-bytes")
        assertInvalid({ $0.maxFrameBytes = Int(UInt32.max) + 1 }, naming: "--max-frame-bytes")
        assertInvalid({ $0.staleness = UInt64.max }, naming: "--staleness")
        assertInvalid({ $0.keepCheckpoints = 0 }, naming: "--keep-checkpoints")
        assertInvalid({ $0.checkpointEverySteps = 0 }, naming: "--checkpoint-every-steps")
    }

    func test_validate_handMadeJobWithZeroWorkers_throwsInsteadOfTrappingInMembership() {
        var config = ServerConfig()
        config.job = JobDescription(
            model: "softmax", data: "digits", test: nil, labelColumn: "first", batchPerWorker: 10, epochs: 1,
            seed: 0, mode: "bsp", staleness: 0, workers: 0, trainRows: 100, featureCount: 64, classCount: 10,
            stepsPerEpoch: 10, totalSteps: 10)
        XCTAssertThrowsError(try config.validate()) { error in
            XCTAssertTrue("\(error)".hasPrefix("the job's job.workers is 0"), "\(error)")
        }
    }

    func test_validate_nonFiniteLearningRate_throwsNamingTheFlag() {
        assertInvalid({ $0.optimizer.learningRate = .nan }, naming: "--lr")
    }

    func test_validate_jobShardLargerThanAFrame_throwsNamingModelAndShards() {
        var config = ServerConfig()
        config.shardCount = 1
        config.maxFrameBytes = 4096
        config.jobTensors = [TensorSpec(name: "fc1.weight", shape: [64, 16], initializer: .zeros)]
        XCTAssertThrowsError(try config.validate()) { error in
            XCTAssertTrue(
                "\(error)".hasPrefix("--model: the largest of --shards 1 shards holds 1024 floats"), "\(error)")
        }
        config.shardCount = 2
        XCTAssertNoThrow(try config.validate())
    }

    func test_validate_jobModelOverMaxModelBytes_throwsNamingTheFlag() {
        var config = ServerConfig()
        config.maxModelBytes = 1000
        config.jobTensors = [TensorSpec(name: "w", shape: [64, 16], initializer: .zeros)]
        XCTAssertThrowsError(try config.validate()) { error in
            XCTAssertTrue("\(error)".contains("more than --max-model-bytes 1000"), "\(error)")
        }
    }
}
