import Foundation

/// The worker's progress text: the epoch line and the progress bar, each with the epoch's mean training loss so
/// far, the rate (samples/s since the worker started training) and the time left at that rate.
enum ProgressText {
    /// Samples per second; 0 before any time passed.
    static func rate(samples: Int, seconds: Double) -> Double {
        seconds > 0 ? Double(samples) / seconds : 0
    }

    /// Seconds to process the remaining steps at `rate`, or nil while the rate is unknown.
    static func secondsLeft(steps remaining: Int, batch: Int, rate: Double) -> Double? {
        guard rate > 0, rate.isFinite else { return nil }
        return Double(max(remaining, 0) * batch) / rate
    }

    /// `42s`, `3m05s` or `2h07m`; `?` when unknown.
    static func duration(_ seconds: Double?) -> String {
        guard let seconds, seconds.isFinite, seconds >= 0, seconds < 1e9 else { return "?" }
        let whole = Int(seconds.rounded())
        if whole < 60 { return "\(whole)s" }
        if whole < 3600 { return String(format: "%dm%02ds", whole / 60, whole % 60) }
        return String(format: "%dh%02dm", whole / 3600, (whole % 3600) / 60)
    }

    /// `epoch 1/10  step 468/4680  loss 0.4915  test accuracy 0.8238  34650 samples/s  ETA 1m02s`: `epoch` counts
    /// from 1; `meanLoss` is the mean training loss of the epoch's steps on this worker.
    static func epochLine(
        epoch: Int, of epochs: Int, step: Int, total: Int, meanLoss: Double, accuracy: Double?, rate: Double,
        secondsLeft: Double?
    ) -> String {
        var line = String(format: "epoch %d/%d  step %d/%d  loss %.4f", epoch, epochs, step, total, meanLoss)
        if let accuracy { line += String(format: "  test accuracy %.4f", accuracy) }
        line += String(format: "  %.0f samples/s  ETA %@", rate, duration(secondsLeft))
        return line
    }

    /// `[#####.........]  17%  step 468/2808  loss 0.4915  34650 samples/s  ETA 1m02s` (no carriage return).
    static func bar(step: Int, total: Int, meanLoss: Double, rate: Double, secondsLeft: Double?) -> String {
        let width = 30
        let filled = total > 0 ? min(width, width * step / total) : width
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        return String(
            format: "[%@] %3d%%  step %d/%d  loss %.4f  %.0f samples/s  ETA %@", bar, 100 * step / max(total, 1), step,
            total, meanLoss, rate, duration(secondsLeft))
    }
}
