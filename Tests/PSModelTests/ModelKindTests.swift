import Foundation
import PSModel
import XCTest

final class ModelKindTests: XCTestCase {
    func test_parsing_validTexts_giveTheirKinds() throws {
        XCTAssertEqual(try ModelKind(parsing: "softmax"), .softmax)
        XCTAssertEqual(try ModelKind(parsing: "linear"), .linear)
        XCTAssertEqual(try ModelKind(parsing: "mlp:128"), .mlp(hidden: [128]))
        XCTAssertEqual(try ModelKind(parsing: "mlp:256,128"), .mlp(hidden: [256, 128]))
    }

    func test_parsing_invalidTexts_throwNamingTheText() {
        let cases: [(String, String)] = [
            ("cnn", "unknown model 'cnn' (expected softmax, linear or mlp:H1,H2,... e.g. mlp:128,64)"),
            ("", "unknown model '' (expected softmax, linear or mlp:H1,H2,... e.g. mlp:128,64)"),
            ("mlp:", "invalid model 'mlp:': hidden layer widths must be positive integers, got ''"),
            ("mlp:0", "invalid model 'mlp:0': hidden layer widths must be positive integers, got '0'"),
            ("mlp:12,x", "invalid model 'mlp:12,x': hidden layer widths must be positive integers, got 'x'"),
            ("mlp:1,,2", "invalid model 'mlp:1,,2': hidden layer widths must be positive integers, got ''"),
            ("mlp:-3", "invalid model 'mlp:-3': hidden layer widths must be positive integers, got '-3'"),
        ]
        for (text, message) in cases {
            XCTAssertThrowsError(try ModelKind(parsing: text), text) { error in
                XCTAssertEqual("\(error)", message)
            }
        }
    }

    func test_description_isReadBackByParsing() throws {
        for kind in [ModelKind.softmax, .linear, .mlp(hidden: [5]), .mlp(hidden: [6, 4])] {
            XCTAssertEqual(try ModelKind(parsing: kind.description), kind)
        }
        XCTAssertEqual(ModelKind.mlp(hidden: [256, 128]).description, "mlp:256,128")
    }

    func test_codable_usesTheTextForm() throws {
        let encoded = try JSONEncoder().encode([ModelKind.mlp(hidden: [6, 4]), .softmax])
        XCTAssertEqual(String(decoding: encoded, as: UTF8.self), #"["mlp:6,4","softmax"]"#)
        XCTAssertEqual(try JSONDecoder().decode([ModelKind].self, from: encoded), [.mlp(hidden: [6, 4]), .softmax])
        XCTAssertThrowsError(try JSONDecoder().decode([ModelKind].self, from: Data(#"["mlp:x"]"#.utf8)))
    }
}
