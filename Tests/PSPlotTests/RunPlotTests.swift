import Foundation
import PSPlot
import XCTest

#if canImport(FoundationXML)
    import FoundationXML
#endif

final class RunPlotTests: XCTestCase {
    static func metricsFile(mode: String, steps: Int, epochs: Int, lossScale: Double) -> String {
        var lines = ["{\"type\":\"run\",\"mode\":\"\(mode)\",\"workers\":2,\"model\":\"mlp:128\"}"]
        for step in 0..<steps {
            lines.append(
                "{\"type\":\"step\",\"step\":\(step),\"loss\":\(lossScale * 2.3 / Double(step + 1)),\"workers\":2}")
        }
        for epoch in 0..<epochs {
            lines.append(
                "{\"type\":\"epoch\",\"epoch\":\(epoch),\"test_accuracy\":\(0.5 + 0.1 * Double(epoch)),\"test_loss\":1}"
            )
        }
        return lines.joined(separator: "\n") + "\n"
    }

    func test_svg_parsesAsXML_hasOnePathPerRunAndSeries_andAxesCoverTheData() throws {
        let bsp = try RunMetrics.parse(
            Self.metricsFile(mode: "bsp", steps: 120, epochs: 4, lossScale: 1), name: "a.jsonl")
        let async = try RunMetrics.parse(
            Self.metricsFile(mode: "async", steps: 80, epochs: 3, lossScale: 3), name: "b.jsonl")
        XCTAssertEqual(bsp.title, "bsp · 2 workers · mlp:128")
        let svg = RunPlot.svg([bsp, async])
        let document = try SVGCollector.parse(svg)
        XCTAssertEqual(
            document.paths.map(\.id).sorted(),
            [
                "run0-accuracy", "run0-loss-raw", "run0-loss-smoothed", "run1-accuracy", "run1-loss-raw",
                "run1-loss-smoothed",
            ])
        XCTAssertEqual(document.paths.first { $0.id == "run0-loss-raw" }?.points, 120)
        XCTAssertEqual(document.paths.first { $0.id == "run1-accuracy" }?.points, 3)
        XCTAssertEqual(document.charts.count, 2)
        let loss = document.charts[0]
        XCTAssertLessThanOrEqual(loss.xMin, 0)
        XCTAssertGreaterThanOrEqual(loss.xMax, 119)
        XCTAssertLessThanOrEqual(loss.yMin, 2.3 / 120)
        XCTAssertGreaterThanOrEqual(loss.yMax, 6.9)
        let accuracy = document.charts[1]
        XCTAssertGreaterThanOrEqual(accuracy.xMax, 3)
        XCTAssertLessThanOrEqual(accuracy.yMin, 0.5)
        XCTAssertGreaterThanOrEqual(accuracy.yMax, 1)
        XCTAssertTrue(document.texts.contains("a.jsonl: bsp · 2 workers · mlp:128"), "legend")
        XCTAssertTrue(document.texts.contains("b.jsonl: async · 2 workers · mlp:128"), "legend")
        XCTAssertTrue(document.texts.contains("step") && document.texts.contains("epoch"), "axis titles")
    }

    func test_parse_badLine_namesTheLine() {
        let text = Self.metricsFile(mode: "bsp", steps: 3, epochs: 0, lossScale: 1) + "{not json\n"
        XCTAssertThrowsError(try RunMetrics.parse(text, name: "run.jsonl")) { error in
            XCTAssertTrue("\(error)".hasPrefix("run.jsonl:5: not a JSON object"), "\(error)")
        }
        XCTAssertThrowsError(try RunMetrics.parse("{\"type\":\"step\",\"step\":1}\n", name: "x")) { error in
            XCTAssertEqual("\(error)", "x:1: step record without a numeric \"loss\"")
        }
        XCTAssertThrowsError(try RunMetrics.parse("\n", name: "empty")) { error in
            XCTAssertEqual("\(error)", "empty: no step or epoch records")
        }
    }

    /// A job rolled back to a checkpoint at step 2 replays steps 2 and 3 (and epoch 1): the plot keeps one point
    /// per step, the replayed values.
    func test_parse_replayedStepsAfterARollback_replaceTheFirstRecords() throws {
        let lines = [
            #"{"type":"step","step":0,"loss":4}"#, #"{"type":"step","step":1,"loss":3}"#,
            #"{"type":"step","step":2,"loss":2}"#, #"{"type":"step","step":3,"loss":1.5}"#,
            #"{"type":"epoch","epoch":1,"test_accuracy":0.5}"#,
            #"{"type":"step","step":2,"loss":2.5}"#, #"{"type":"step","step":3,"loss":1.25}"#,
            #"{"type":"epoch","epoch":1,"test_accuracy":0.6}"#, #"{"type":"step","step":4,"loss":1}"#,
        ]
        let run = try RunMetrics.parse(lines.joined(separator: "\n"), name: "rolled-back.jsonl")
        XCTAssertEqual(run.steps.map(\.step), [0, 1, 2, 3, 4])
        XCTAssertEqual(run.steps.map(\.loss), [4, 3, 2.5, 1.25, 1])
        XCTAssertEqual(run.epochs.map(\.accuracy), [0.6])
    }

    func test_ticks_coverTheRangeAtNiceValues() {
        XCTAssertEqual(Ticks.nice(low: 0.13, high: 0.91, count: 5), [0, 0.2, 0.4, 0.6, 0.8, 1])
        XCTAssertEqual(Ticks.nice(low: 0, high: 2, count: 6, integer: true), [0, 1, 2])
        XCTAssertEqual(Ticks.nice(low: 3, high: 3), [3, 3.2, 3.4, 3.6, 3.8, 4])
        XCTAssertEqual(Ticks.label(0.25), "0.25")
        XCTAssertEqual(Ticks.label(1000), "1000")
    }

    func test_amdahl_fitRecoversTheSerialFraction() {
        let points = [1.0, 2, 4, 8].map { (workers: $0, speedup: Amdahl.speedup(workers: $0, serialFraction: 0.2)) }
        XCTAssertEqual(Amdahl.fitSerialFraction(points), 0.2, accuracy: 1e-6)
        XCTAssertEqual(Amdahl.fitSerialFraction([(1, 1), (2, 2), (4, 4)]), 0, accuracy: 1e-6)
        let svg = ScalingPlot.svg(measured: [("bsp", points)], fits: ["bsp": 0.2], title: "scale")
        XCTAssertNoThrow(try SVGCollector.parse(svg))
    }
}

/// Reads an SVG with Foundation's XML parser: paths (id, point count), chart ranges and text content.
final class SVGCollector: NSObject, XMLParserDelegate {
    struct Chart {
        var xMin = 0.0
        var xMax = 0.0
        var yMin = 0.0
        var yMax = 0.0
    }

    var paths: [(id: String, points: Int)] = []
    var charts: [Chart] = []
    var texts: [String] = []
    private var currentText: String? = nil

    static func parse(_ svg: String) throws -> SVGCollector {
        let collector = SVGCollector()
        let parser = XMLParser(data: Data(svg.utf8))
        parser.delegate = collector
        guard parser.parse() else {
            throw PlotError("SVG is not well-formed XML: \(String(describing: parser.parserError))")
        }
        return collector
    }

    func parser(
        _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?,
        attributes: [String: String] = [:]
    ) {
        switch elementName {
        case "path":
            paths.append((attributes["id"] ?? "", Int(attributes["data-points"] ?? "") ?? -1))
        case "g" where attributes["class"] == "chart":
            charts.append(
                Chart(
                    xMin: Double(attributes["data-x-min"] ?? "") ?? .nan,
                    xMax: Double(attributes["data-x-max"] ?? "") ?? .nan,
                    yMin: Double(attributes["data-y-min"] ?? "") ?? .nan,
                    yMax: Double(attributes["data-y-max"] ?? "") ?? .nan))
        case "text":
            currentText = ""
        default:
            break
        }
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        currentText? += string
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
        if elementName == "text", let text = currentText {
            texts.append(text)
            currentText = nil
        }
    }
}
