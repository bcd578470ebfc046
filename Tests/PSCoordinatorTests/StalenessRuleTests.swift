import PSCoordinator
import XCTest

final class StalenessRuleTests: XCTestCase {
    func test_drop_stalenessEqualToMax_applies() {
        let rule = StalenessRule(maxStaleness: 2, policy: .drop)
        XCTAssertEqual(rule.decide(currentVersion: 12, baseVersion: 10), .apply)
    }

    func test_drop_stalenessOneOverMax_drops() {
        let rule = StalenessRule(maxStaleness: 2, policy: .drop)
        XCTAssertEqual(rule.decide(currentVersion: 13, baseVersion: 10), .drop(staleness: 3))
    }

    func test_drop_maxZero_dropsAnyStalePush() {
        let rule = StalenessRule(maxStaleness: 0, policy: .drop)
        XCTAssertEqual(rule.decide(currentVersion: 10, baseVersion: 10), .apply)
        XCTAssertEqual(rule.decide(currentVersion: 11, baseVersion: 10), .drop(staleness: 1))
    }

    func test_drop_noBound_neverDrops() {
        let rule = StalenessRule(maxStaleness: nil, policy: .drop)
        XCTAssertEqual(rule.decide(currentVersion: .max, baseVersion: 0), .apply)
    }

    func test_scale_stalenessEqualToMax_appliesUnscaled() {
        let rule = StalenessRule(maxStaleness: 2, policy: .scale)
        XCTAssertEqual(rule.decide(currentVersion: 12, baseVersion: 10), .apply)
    }

    func test_scale_stalenessOneOverMax_scalesByOneOverStalenessPlusOne() {
        let rule = StalenessRule(maxStaleness: 2, policy: .scale)
        XCTAssertEqual(rule.decide(currentVersion: 13, baseVersion: 10), .applyScaled(scale: 0.25, staleness: 3))
    }

    func test_scale_noBound_scalesEveryStalePush() {
        let rule = StalenessRule(maxStaleness: nil, policy: .scale)
        XCTAssertEqual(rule.decide(currentVersion: 10, baseVersion: 10), .apply)
        XCTAssertEqual(rule.decide(currentVersion: 11, baseVersion: 10), .applyScaled(scale: 0.5, staleness: 1))
    }

    func test_baseNewerThanCurrent_countsAsFresh() {
        XCTAssertEqual(StalenessRule.staleness(currentVersion: 3, baseVersion: 9), 0)
        XCTAssertEqual(StalenessRule(maxStaleness: 0, policy: .drop).decide(currentVersion: 3, baseVersion: 9), .apply)
        XCTAssertEqual(
            StalenessRule(maxStaleness: nil, policy: .scale).decide(currentVersion: 3, baseVersion: 9), .apply)
    }
}
