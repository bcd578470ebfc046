import Foundation
import XCTest

@testable import PSLog

/// The log line's timestamp: ISO 8601 UTC with milliseconds, built without a date formatter.
final class LoggerTests: XCTestCase {
    func test_timestamp_formatsUTCWithMilliseconds() {
        XCTAssertEqual(Logger.timestamp(seconds: 0, milliseconds: 0), "1970-01-01T00:00:00.000Z")
        XCTAssertEqual(Logger.timestamp(seconds: 1_709_251_199, milliseconds: 999), "2024-02-29T23:59:59.999Z")
        XCTAssertEqual(Logger.timestamp(seconds: 1_795_000_000, milliseconds: 7), "2026-11-18T11:06:40.007Z")
        XCTAssertEqual(Logger.timestamp(seconds: 4_102_444_800, milliseconds: 40), "2100-01-01T00:00:00.040Z")
    }

    /// The current time reads back through Foundation's ISO 8601 parser as now (the form the old formatter wrote).
    func test_timestamp_isNow_andParsesAsISO8601() throws {
        let text = Logger.timestamp()
        let parser = ISO8601DateFormatter()
        parser.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let parsed = try XCTUnwrap(parser.date(from: text), text)
        XCTAssertEqual(parsed.timeIntervalSinceNow, 0, accuracy: 5, text)
    }
}
