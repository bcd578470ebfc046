import Foundation
import PSServer
import XCTest

/// `MetricsValue.json`, the text of every `--metrics-out` line and status document: compact, keys sorted at every
/// level, strings escaped as JSON requires, non-finite numbers as null; and what it writes parses back.
final class MetricsValueTests: XCTestCase {
    func test_object_sortsKeysAtEveryLevel_andWritesEachKind() {
        let value = MetricsValue.object([
            "type": .string("step"), "step": .int(-7), "loss": .double(0.25), "done": .bool(false),
            "checkpoint": .null, "clocks": .object(["w1": .int(3), "w0": .int(2)]),
            "list": .array([.int(1), .string("a"), .array([]), .object([:])]),
        ])
        XCTAssertEqual(
            value.json,
            #"{"checkpoint":null,"clocks":{"w0":2,"w1":3},"done":false,"list":[1,"a",[],{}],"loss":0.25,"#
                + #""step":-7,"type":"step"}"#)
    }

    func test_strings_escapeQuotesBackslashesAndControlCharacters_andKeepTheRest() throws {
        let text = "a\"b\\c\nd\re\tf\u{1}g é ✓ 🙂"
        let json = MetricsValue.object([text: .string(text)]).json
        let escaped = #""a\"b\\c\nd\re\tf\u0001g é ✓ 🙂""#
        XCTAssertEqual(json, "{\(escaped):\(escaped)}")
        let parsed = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: String])
        XCTAssertEqual(parsed, [text: text])
        XCTAssertEqual(MetricsValue.string("plain name").json, #""plain name""#)
    }

    func test_nonFiniteDoubles_areNull() {
        XCTAssertEqual(MetricsValue.array([.double(.nan), .double(.infinity), .double(-1.5)]).json, "[null,null,-1.5]")
    }
}
