import PSWire
import XCTest

/// `WelcomeConfig.validate(rank:)`: every count a worker sizes buffers, loops and divisions by is checked first.
final class WelcomeValidationTests: XCTestCase {
    /// A consistent job: 1000 rows, 2 workers x 10 rows, 50 steps per epoch, 3 epochs.
    static func job() -> JobDescription {
        JobDescription(
            model: "softmax", data: "digits", test: nil, labelColumn: "first", batchPerWorker: 10, epochs: 3,
            seed: 0, mode: "bsp", staleness: 0, workers: 2, trainRows: 1000, featureCount: 64, classCount: 10,
            stepsPerEpoch: 50, totalSteps: 150)
    }

    static func welcome(_ change: (inout WelcomeConfig) -> Void = { _ in }) -> WelcomeConfig {
        var config = WelcomeConfig(
            job: job(), startStep: 0, shardCount: 4, shardMap: ["", "", "", ""],
            tensors: [TensorShape(name: "fc1.weight", shape: [64, 10]), TensorShape(name: "fc1.bias", shape: [10])],
            heartbeatIntervalMillis: 1000, rejectsNonFinite: true)
        change(&config)
        return config
    }

    func assertRejected(
        _ config: WelcomeConfig, rank: Int? = 0, field: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(try config.validate(rank: rank), file: file, line: line) { error in
            guard let error = error as? WelcomeError else {
                return XCTFail("unexpected error \(error)", file: file, line: line)
            }
            XCTAssertEqual(error.field, field, "\(error)", file: file, line: line)
            XCTAssertTrue(error.description.contains(field), error.description, file: file, line: line)
            XCTAssertFalse(error.description.contains("\n"), error.description, file: file, line: line)
        }
    }

    func test_validate_consistentWelcome_passes() throws {
        try Self.welcome().validate(rank: 1)
        try Self.welcome { $0.startStep = 150 }.validate(rank: 0)
        try Self.welcome { $0.job = nil }.validate(rank: nil)
    }

    func test_validate_shardCountZeroOrHuge_throwsNamingShardCount() {
        assertRejected(Self.welcome { $0.shardCount = 0 }, field: "shardCount")
        assertRejected(Self.welcome { $0.shardCount = -1 }, field: "shardCount")
        assertRejected(Self.welcome { $0.shardCount = Int.max }, field: "shardCount")
    }

    func test_validate_workersOrBatchZero_throwsNamingTheField() {
        assertRejected(Self.welcome { $0.job?.workers = 0 }, field: "job.workers")
        assertRejected(Self.welcome { $0.job?.workers = -3 }, field: "job.workers")
        assertRejected(Self.welcome { $0.job?.batchPerWorker = 0 }, field: "job.batchPerWorker")
        assertRejected(Self.welcome { $0.job?.epochs = 0 }, field: "job.epochs")
        assertRejected(Self.welcome { $0.job?.trainRows = 0 }, field: "job.trainRows")
        assertRejected(Self.welcome { $0.job?.featureCount = 0 }, field: "job.featureCount")
        assertRejected(Self.welcome { $0.job?.classCount = -1 }, field: "job.classCount")
    }

    func test_validate_globalBatchOverflowOrLargerThanData_throwsNamingBatch() {
        assertRejected(
            Self.welcome {
                $0.job?.workers = Int(Int32.max)
                $0.job?.batchPerWorker = Int.max / 2
            }, field: "job.batchPerWorker")
        assertRejected(Self.welcome { $0.job?.batchPerWorker = 501 }, field: "job.batchPerWorker")
    }

    func test_validate_stepCountsInconsistent_throwsNamingTheField() {
        assertRejected(Self.welcome { $0.job?.stepsPerEpoch = 0 }, field: "job.stepsPerEpoch")
        assertRejected(Self.welcome { $0.job?.stepsPerEpoch = 51 }, field: "job.stepsPerEpoch")
        assertRejected(Self.welcome { $0.job?.totalSteps = 0 }, field: "job.totalSteps")
        assertRejected(Self.welcome { $0.job?.totalSteps = -150 }, field: "job.totalSteps")
    }

    func test_validate_rankOutOfRangeOrMissing_throwsNamingRank() {
        assertRejected(Self.welcome(), rank: 2, field: "rank")
        assertRejected(Self.welcome(), rank: -1, field: "rank")
        assertRejected(Self.welcome(), rank: nil, field: "rank")
    }

    func test_validate_startStepPastTheEnd_throwsNamingStartStep() {
        assertRejected(Self.welcome { $0.startStep = 151 }, field: "startStep")
        assertRejected(Self.welcome { $0.startStep = UInt64.max }, field: "startStep")
    }

    func test_validate_tensorShapesNegativeOrOverflowing_throwsNamingTensors() {
        assertRejected(Self.welcome { $0.tensors = [TensorShape(name: "w", shape: [-1, 3])] }, field: "tensors")
        assertRejected(
            Self.welcome { $0.tensors = [TensorShape(name: "w", shape: [1 << 32, 1 << 32])] }, field: "tensors")
        assertRejected(
            Self.welcome { $0.tensors = Array(repeating: TensorShape(name: "w", shape: [1 << 39]), count: 3) },
            field: "tensors")
    }

    func test_validate_shardLargerThanAFrame_throwsNamingTensors() {
        assertRejected(
            Self.welcome {
                $0.shardCount = 1
                $0.tensors = [TensorShape(name: "w", shape: [1 << 28])]
            }, field: "tensors")
        XCTAssertNoThrow(
            try Self.welcome {
                $0.job = nil
                $0.shardCount = 4
                $0.tensors = [TensorShape(name: "w", shape: [1 << 28])]
            }.validate(rank: nil))
    }

    func test_validate_negativeHeartbeatInterval_throwsNamingIt() {
        assertRejected(Self.welcome { $0.heartbeatIntervalMillis = -1 }, field: "heartbeatIntervalMillis")
    }
}
