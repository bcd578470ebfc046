import XCTest

@testable import PSTraining

/// The worker's progress text: rate, time left, the epoch line and the bar.
final class ProgressTextTests: XCTestCase {
    func test_duration_secondsMinutesHours_andUnknown() {
        XCTAssertEqual(ProgressText.duration(42.4), "42s")
        XCTAssertEqual(ProgressText.duration(185), "3m05s")
        XCTAssertEqual(ProgressText.duration(7620), "2h07m")
        XCTAssertEqual(ProgressText.duration(nil), "?")
        XCTAssertEqual(ProgressText.duration(.infinity), "?")
    }

    func test_secondsLeft_fromTheRemainingStepsAtTheRate() {
        XCTAssertEqual(ProgressText.secondsLeft(steps: 100, batch: 64, rate: 3200), 2)
        XCTAssertNil(ProgressText.secondsLeft(steps: 100, batch: 64, rate: 0), "no rate yet")
        XCTAssertEqual(ProgressText.rate(samples: 640, seconds: 2), 320)
        XCTAssertEqual(ProgressText.rate(samples: 640, seconds: 0), 0)
    }

    func test_epochLine_hasTheMeanLossTheRateAndAnETA() {
        let line = ProgressText.epochLine(
            epoch: 1, of: 10, step: 468, total: 4680, meanLoss: 0.49154, accuracy: 0.82381, rate: 34650,
            secondsLeft: 62)
        XCTAssertEqual(line, "epoch 1/10  step 468/4680  loss 0.4915  test accuracy 0.8238  34650 samples/s  ETA 1m02s")
    }

    func test_bar_hasTheRateAndAnETA() {
        let bar = ProgressText.bar(step: 50, total: 100, meanLoss: 0.5, rate: 1000, secondsLeft: 3)
        XCTAssertEqual(bar, "[###############...............]  50%  step 50/100  loss 0.5000  1000 samples/s  ETA 3s")
    }
}
