import Foundation
import PSCLI
import PSPlot

/// `psctl plot RUN.jsonl [MORE.jsonl…] -o FILE.svg`: the loss per step and the test accuracy per epoch of one or
/// more `--metrics-out` files in one SVG, one colour per run.
enum Plot {
    static let command = Command(
        name: "plot", abstract: "Draw the loss and test accuracy of one or more metrics files as one SVG.",
        discussion: """
            Reads the JSON-lines files psserver --metrics-out writes and draws the training loss per step \
            (smoothed, the raw curve faint) above the test accuracy per epoch, one colour per run, with a legend \
            naming each run's mode, workers and model. Compare BSP with async, or two learning rates, in one picture.
            """,
        options: [
            Option("output", short: "o", value: "file.svg", help: "Where to write the SVG."),
            Option("smoothing", value: "w", help: "EMA weight of the smoothed loss (0 draws it raw).", default: "0.9"),
        ],
        arguments: [Argument("run", help: "A metrics file (JSON lines).", variadic: true)])

    static func run(_ arguments: ParsedArguments) throws -> Int32 {
        guard let output = arguments.string("output") else {
            throw UsageError("Missing expected option '--output <file.svg>'")
        }
        let smoothing = try arguments.required("smoothing", as: Double.self)
        guard (0..<1).contains(smoothing) else { throw UsageError("--smoothing must be in [0, 1)") }
        var runs: [RunMetrics] = []
        for path in arguments.arguments("run") {
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw CtlError("cannot read \(path): \(error.localizedDescription)")
            }
            do {
                runs.append(try RunMetrics.parse(text, name: path))
            } catch {
                throw CtlError(error.description)
            }
        }
        let svg = RunPlot.svg(runs, smoothing: smoothing)
        do {
            try svg.write(toFile: output, atomically: true, encoding: .utf8)
        } catch {
            throw CtlError("cannot write \(output): \(error.localizedDescription)")
        }
        let steps = runs.map { "\($0.steps.count) steps, \($0.epochs.count) epochs" }.joined(separator: "; ")
        print("wrote \(output): \(runs.count) run\(runs.count == 1 ? "" : "s") (\(steps))")
        return 0
    }
}
