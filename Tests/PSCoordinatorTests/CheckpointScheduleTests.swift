import PSCoordinator
import XCTest

final class CheckpointScheduleTests: XCTestCase {
    private let second: UInt64 = 1_000_000_000

    func test_everySteps_dueEveryNCompletedSteps() {
        var schedule = CheckpointSchedule(everySteps: 3, everySeconds: nil, startNanos: 0)
        var taken: [UInt64] = []
        for step in UInt64(1)...10 where schedule.onStepCompleted(step: step, now: step * second) {
            taken.append(step)
            schedule.onCheckpointTaken(step: step, now: step * second)
        }
        XCTAssertEqual(taken, [3, 6, 9])
    }

    func test_everySteps_dueUntilTaken() {
        var schedule = CheckpointSchedule(everySteps: 2, everySeconds: nil, startNanos: 0)
        XCTAssertFalse(schedule.onStepCompleted(step: 1, now: 0))
        XCTAssertTrue(schedule.onStepCompleted(step: 2, now: 0))
        XCTAssertTrue(schedule.onStepCompleted(step: 3, now: 0), "not taken at step 2, still due")
        schedule.onCheckpointTaken(step: 3, now: 0)
        XCTAssertFalse(schedule.onStepCompleted(step: 4, now: 0))
        XCTAssertTrue(schedule.onStepCompleted(step: 5, now: 0))
    }

    func test_everySteps_countsFromRestoredStep() {
        var schedule = CheckpointSchedule(everySteps: 10, everySeconds: nil, startNanos: 0, completedSteps: 100)
        XCTAssertFalse(schedule.onStepCompleted(step: 109, now: 0))
        XCTAssertTrue(schedule.onStepCompleted(step: 110, now: 0))
    }

    func test_everySeconds_measuredFromLastCheckpoint() {
        var schedule = CheckpointSchedule(everySteps: nil, everySeconds: 2.5, startNanos: 10 * second)
        XCTAssertFalse(schedule.onStepCompleted(step: 1, now: 12 * second))
        XCTAssertFalse(schedule.onStepCompleted(step: 2, now: 12 * second + 499_999_999))
        XCTAssertTrue(schedule.onStepCompleted(step: 3, now: 12 * second + 500_000_000))
        schedule.onCheckpointTaken(step: 3, now: 13 * second)
        XCTAssertFalse(schedule.onStepCompleted(step: 4, now: 15 * second))
        XCTAssertTrue(schedule.onStepCompleted(step: 5, now: 15 * second + 500_000_000))
    }

    func test_request_dueAtNextBoundaryThenCleared() {
        var schedule = CheckpointSchedule(everySteps: nil, everySeconds: nil, startNanos: 0)
        XCTAssertFalse(schedule.onStepCompleted(step: 1, now: 1))
        schedule.request(now: 5)
        XCTAssertTrue(schedule.isRequested)
        XCTAssertEqual(schedule.requestedAtNanos, 5)
        XCTAssertTrue(schedule.onStepCompleted(step: 2, now: 6))
        schedule.onCheckpointTaken(step: 2, now: 7)
        XCTAssertFalse(schedule.isRequested)
        XCTAssertNil(schedule.requestedAtNanos)
        XCTAssertFalse(schedule.onStepCompleted(step: 3, now: 8))
    }

    func test_request_resetsStepInterval() {
        var schedule = CheckpointSchedule(everySteps: 4, everySeconds: nil, startNanos: 0)
        schedule.request(now: 0)
        XCTAssertTrue(schedule.onStepCompleted(step: 2, now: 0))
        schedule.onCheckpointTaken(step: 2, now: 0)
        XCTAssertFalse(schedule.onStepCompleted(step: 4, now: 0))
        XCTAssertTrue(schedule.onStepCompleted(step: 6, now: 0))
    }
}
