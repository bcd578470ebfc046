import Foundation

/// Amdahl's law: with a serial fraction s, n workers run at most `1 / (s + (1 - s) / n)` times faster than one.
public enum Amdahl {
    public static func speedup(workers: Double, serialFraction s: Double) -> Double {
        1 / (s + (1 - s) / workers)
    }

    /// The serial fraction in [0, 1] that minimises the squared error to the measured `(workers, speedup)` points
    /// (a fine grid, then a golden-section refinement; the error is unimodal in s for speedups of at least 1).
    public static func fitSerialFraction(_ points: [(workers: Double, speedup: Double)]) -> Double {
        func error(_ s: Double) -> Double {
            points.reduce(0) { sum, point in
                let diff = speedup(workers: point.workers, serialFraction: s) - point.speedup
                return sum + diff * diff
            }
        }
        var best = 0.0
        for step in 0...1000 {
            let s = Double(step) / 1000
            if error(s) < error(best) { best = s }
        }
        var low = max(0, best - 0.001)
        var high = min(1, best + 0.001)
        let ratio = (sqrt(5) - 1) / 2
        for _ in 0..<60 {
            let a = high - ratio * (high - low)
            let b = low + ratio * (high - low)
            if error(a) < error(b) { high = b } else { low = a }
        }
        return (low + high) / 2
    }
}

/// `psbench scale`'s figure: measured speedup against workers per mode, the ideal line and each mode's fitted
/// Amdahl curve.
public enum ScalingPlot {
    /// `measured`: per mode, `(workers, speedup)`; `fits`: the fitted serial fraction per mode.
    public static func svg(
        measured: [(mode: String, points: [(workers: Double, speedup: Double)])], fits: [String: Double], title: String
    ) -> String {
        let maxWorkers = measured.flatMap { $0.points.map(\.workers) }.max() ?? 8
        let grid = stride(from: 1.0, through: maxWorkers, by: 0.25).map { $0 }
        var ideal = Series(id: "ideal", label: "ideal (linear)", color: "#999999", points: grid.map { ($0, $0) })
        ideal.dashed = true
        var series = [ideal]
        var legend: [(color: String, label: String)] = [("#999999", "ideal: speedup = workers")]
        var dashed: Set<Int> = [0]
        for (index, mode) in measured.enumerated() {
            let color = SVG.colors[index % SVG.colors.count]
            var points = Series(
                id: "measured-\(mode.mode)", label: "\(mode.mode) measured", color: color,
                points: mode.points.map { ($0.workers, $0.speedup) })
            points.markers = true
            points.width = 2
            series.append(points)
            legend.append((color, "\(mode.mode): measured"))
            if let s = fits[mode.mode] {
                var fitted = Series(
                    id: "amdahl-\(mode.mode)", label: "\(mode.mode) Amdahl fit", color: color,
                    points: grid.map { ($0, Amdahl.speedup(workers: $0, serialFraction: s)) })
                fitted.dashed = true
                fitted.opacity = 0.7
                series.append(fitted)
                dashed.insert(legend.count)
                legend.append((color, "\(mode.mode): Amdahl fit, serial fraction " + String(format: "%.3f", s)))
            }
        }
        var chart = LineChart(title: title, xLabel: "workers", yLabel: "speedup over 1 worker (×)", series: series)
        chart.integerX = true
        chart.yInclude = [0]
        let body =
            chart.render(x: 0, y: 0, width: 760, height: 420)
            + SVG.legend(x: 70, y: 440, entries: legend, dashed: dashed)
        return SVG.document(width: 760, height: 450 + Double(legend.count) * 18, body: body)
    }
}
