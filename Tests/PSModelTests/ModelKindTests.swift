import Foundation
import PSModel
import XCTest

final class ModelKindTests: XCTestCase {
    func test_parsing_validTexts_giveTheirKinds() throws {
        XCTAssertEqual(try ModelKind(parsing: "softmax"), .softmax)
        XCTAssertEqual(try ModelKind(parsing: "linear"), .linear)
        XCTAssertEqual(try ModelKind(parsing: "mlp:128"), .mlp(hidden: [128]))
        XCTAssertEqual(try ModelKind(parsing: "mlp:256,128"), .mlp(hidden: [256, 128]))
        XCTAssertEqual(try ModelKind(parsing: "cnn:32,64,128"), .cnn(channels1: 32, channels2: 64, hidden: 128))
    }

    func test_parsing_invalidTexts_throwNamingTheText() {
        let cases: [(String, String)] = [
            (
                "cnn",
                "unknown model 'cnn' (expected softmax, linear, mlp:H1,H2,... e.g. mlp:128,64, or cnn:C1,C2,H e.g. cnn:32,64,128)"
            ),
            (
                "cnn:1,2",
                "invalid model 'cnn:1,2': expected cnn:C1,C2,H with three positive integers (the two convolutions' channels and the hidden layer's width), e.g. cnn:32,64,128"
            ),
            (
                "",
                "unknown model '' (expected softmax, linear, mlp:H1,H2,... e.g. mlp:128,64, or cnn:C1,C2,H e.g. cnn:32,64,128)"
            ),
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
