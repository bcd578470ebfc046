import PSClient
import PSWire
import XCTest

/// Counters a worker reports (clock, heartbeat, epoch samples) that no worker of the job can send are refused with
/// `invalidArgument`; before, status and the metrics file trapped converting them to `Int`.
final class ReportLimitsTests: XCTestCase {
    /// An in-process async job server: 100 rows, 1 worker x 10 rows, 10 steps per epoch, 2 epochs.
    func jobHarness() throws -> ServerHarness {
        try ServerHarness(shards: 2) { config in
            config.job = JobDescription(
                model: "linear", data: "synthetic:100,3,0", test: nil, labelColumn: "first", batchPerWorker: 10,
                epochs: 2, seed: 0, mode: "async", staleness: 0, workers: 1, trainRows: 100, featureCount: 3,
                classCount: 0, stepsPerEpoch: 10, totalSteps: 20)
            config.jobTensors = [
                TensorSpec(name: "fc1.weight", shape: [3, 1], initializer: .zeros),
                TensorSpec(name: "fc1.bias", shape: [1], initializer: .zeros),
            ]
        }
    }

    func assertInvalidArgument(
        _ client: ParameterClient, _ message: Message, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(try client.request(message).wait(timeout: .seconds(10)), file: file, line: line) {
            guard case .remote(let code, _) = $0 as? ClientError else {
                return XCTFail("unexpected \($0)", file: file, line: line)
            }
            XCTAssertEqual(code, .invalidArgument, file: file, line: line)
        }
    }

    func test_clockPastTheLastStepOrHugeSamples_isRefused_andStatusStillWorks() throws {
        let harness = try jobHarness()
        let worker = try harness.client(name: "w0")
        defer { worker.close() }
        assertInvalidArgument(worker, .clock(ClockReport(rank: 0, clock: UInt64.max, loss: 0, samples: 10)))
        assertInvalidArgument(worker, .clock(ClockReport(rank: 0, clock: 21, loss: 0, samples: 10)))
        assertInvalidArgument(worker, .clock(ClockReport(rank: 0, clock: 1, loss: 0, samples: UInt64.max)))
        assertInvalidArgument(worker, .heartbeat(Heartbeat(rank: 0, clock: UInt64.max)))
        assertInvalidArgument(
            worker, .metrics(EpochMetrics(epoch: 0, testLoss: 0, testAccuracy: 0, samples: UInt64.max)))
        let reply = try worker.request(.status(StatusRequest())).wait(timeout: .seconds(10))
        guard case .message(.statusReply) = reply else { return XCTFail("unexpected reply \(reply)") }
        _ = try worker.request(.clock(ClockReport(rank: 0, clock: 1, loss: 0.5, samples: 10))).wait(
            timeout: .seconds(10))
    }

    func test_registerShardLargerThanAFrame_isRefusedBeforeAllocating() throws {
        let harness = try ServerHarness(shards: 1) { $0.maxFrameBytes = 4096 }
        let client = try harness.client(name: "store")
        defer { client.close() }
        assertInvalidArgument(client, .register(Register(tensors: zeroTensors([2000]))))
        XCTAssertNoThrow(try client.register(zeroTensors([1000])))
    }
}
