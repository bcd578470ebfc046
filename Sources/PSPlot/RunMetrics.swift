import Foundation

/// A metrics file that cannot be plotted; the message names the file and the line.
public struct PlotError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One training run as its `--metrics-out` file records it: the run header (when present), the loss per step and
/// the test metrics per epoch.
public struct RunMetrics: Sendable {
    public var name: String
    public var mode: String?
    public var workers: Int?
    public var model: String?
    public var steps: [(step: Double, loss: Double)] = []
    public var epochs: [(epoch: Double, accuracy: Double, loss: Double)] = []

    /// `bsp · 2 workers · mlp:128`, from what the file records (the file name when it records nothing).
    public var title: String {
        var parts: [String] = []
        if let mode { parts.append(mode) }
        if let workers { parts.append("\(workers) worker\(workers == 1 ? "" : "s")") }
        if let model { parts.append(model) }
        return parts.isEmpty ? name : parts.joined(separator: " · ")
    }

    /// Parses the JSON lines of a metrics file; `name` (the file's) goes into error messages.
    ///
    /// Records: `{"type":"run", "mode", "workers", "model", …}` (the server's first line), `{"type":"step",
    /// "step", "loss", "workers", …}` and `{"type":"epoch", "epoch", "test_accuracy", "test_loss", …}`; other
    /// types are ignored, as are blank lines. A line that is not a JSON object, or a step or epoch record without
    /// its numbers, is an error naming the line. A job rolled back or resumed from a checkpoint records the steps
    /// (and epochs) after it again: a record whose step is not past the last one replaces it and everything after.
    public static func parse(_ text: String, name: String) throws(PlotError) -> RunMetrics {
        var run = RunMetrics(name: name)
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            let location = "\(name):\(index + 1)"
            guard let data = trimmed.data(using: .utf8),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            else { throw PlotError("\(location): not a JSON object: \(trimmed.prefix(60))") }
            switch object["type"] as? String {
            case "run":
                run.mode = object["mode"] as? String
                run.workers = (object["workers"] as? NSNumber)?.intValue
                run.model = object["model"] as? String
            case "step":
                guard let step = number(object["step"]) else {
                    throw PlotError("\(location): step record without \"step\"")
                }
                guard let loss = number(object["loss"]) ?? (object["loss"] is NSNull ? .nan : nil) else {
                    throw PlotError("\(location): step record without a numeric \"loss\"")
                }
                // A rolled-back or resumed job replays steps from its checkpoint: the replay replaces them.
                while let last = run.steps.last, last.step >= step { run.steps.removeLast() }
                run.steps.append((step, loss))
                if run.workers == nil { run.workers = (object["workers"] as? NSNumber)?.intValue }
            case "epoch":
                guard let epoch = number(object["epoch"]), let accuracy = number(object["test_accuracy"]) else {
                    throw PlotError("\(location): epoch record without \"epoch\" and \"test_accuracy\"")
                }
                while let last = run.epochs.last, last.epoch >= epoch { run.epochs.removeLast() }
                run.epochs.append((epoch, accuracy, number(object["test_loss"]) ?? .nan))
            default:
                continue
            }
        }
        guard !run.steps.isEmpty || !run.epochs.isEmpty else { throw PlotError("\(name): no step or epoch records") }
        return run
    }

    private static func number(_ value: Any?) -> Double? {
        guard let number = value as? NSNumber else { return nil }
        return number.doubleValue
    }
}

/// Exponential moving average with TensorBoard's bias correction (`weight` 0 keeps the raw curve).
public func smoothed(_ values: [Double], weight: Double) -> [Double] {
    var last = 0.0
    var count = 0.0
    return values.map { value in
        guard value.isFinite else { return value }
        last = last * weight + (1 - weight) * value
        count += 1
        return last / (1 - pow(weight, count))
    }
}

/// `psctl plot`'s figure: the loss per step (smoothed, with the raw curve faint) above the test accuracy per
/// epoch, one colour per run, a legend with each run's mode, workers and model.
public enum RunPlot {
    /// The figure as an SVG document. Path ids: `run<i>-loss-raw`, `run<i>-loss-smoothed`, `run<i>-accuracy`.
    public static func svg(_ runs: [RunMetrics], smoothing: Double = 0.9) -> String {
        let width = 900.0
        let chartHeight = 340.0
        let legendTop = 2 * chartHeight + 20
        let height = legendTop + Double(runs.count) * 18 + 16
        var loss: [Series] = []
        var accuracy: [Series] = []
        for (index, run) in runs.enumerated() {
            let color = SVG.colors[index % SVG.colors.count]
            let raw = run.steps.map { (x: $0.step, y: $0.loss) }
            var faint = Series(id: "run\(index)-loss-raw", label: "\(run.title) (raw)", color: color, points: raw)
            faint.opacity = 0.25
            faint.width = 1
            let smooth = zip(raw, smoothed(raw.map(\.y), weight: smoothing)).map { (x: $0.0.x, y: $0.1) }
            var line = Series(id: "run\(index)-loss-smoothed", label: run.title, color: color, points: smooth)
            line.width = 2
            loss += [faint, line]
            var epochs = Series(
                id: "run\(index)-accuracy", label: run.title, color: color,
                points: run.epochs.map { (x: $0.epoch, y: $0.accuracy) })
            epochs.markers = true
            epochs.width = 2
            accuracy.append(epochs)
        }
        var lossChart = LineChart(
            title: "Training loss per step (EMA \(smoothing), raw faint)", xLabel: "step",
            yLabel: "loss (cross-entropy)",
            series: loss)
        lossChart.integerX = true
        var accuracyChart = LineChart(
            title: "Test accuracy per epoch", xLabel: "epoch", yLabel: "test accuracy (fraction)", series: accuracy)
        accuracyChart.integerX = true
        accuracyChart.yInclude = [1]
        let body =
            lossChart.render(x: 0, y: 0, width: width, height: chartHeight)
            + accuracyChart.render(x: 0, y: chartHeight, width: width, height: chartHeight)
            + SVG.legend(
                x: 70, y: legendTop,
                entries: runs.enumerated().map {
                    (SVG.colors[$0.offset % SVG.colors.count], "\($0.element.name): \($0.element.title)")
                })
        return SVG.document(width: width, height: height, body: body)
    }
}
