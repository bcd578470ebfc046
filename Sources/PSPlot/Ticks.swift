import Foundation

/// Axis ticks at "nice" values (1, 2 or 5 times a power of ten) that cover a data range.
public enum Ticks {
    /// About `count` ticks from at or below `low` to at or above `high`; whole numbers only when `integer`.
    public static func nice(low: Double, high: Double, count: Int = 5, integer: Bool = false) -> [Double] {
        var low = low
        var high = high
        if !low.isFinite || !high.isFinite {
            low = 0
            high = 1
        }
        if high <= low { high = low + 1 }
        let raw = (high - low) / Double(max(count, 1))
        let magnitude = pow(10, floor(log10(raw)))
        var step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw * (1 - 1e-9) } ?? 10 * magnitude
        if integer { step = max(1, step.rounded()) }
        let first = floor(low / step + 1e-9) * step
        // Round to the step's decimals, so 0.6 is 0.6 and not 0.6000000000000001.
        let scale = pow(10, max(0, -floor(log10(step))) + 1)
        var ticks: [Double] = []
        var index = 0.0
        while ticks.isEmpty || ticks.last! < high - step * 1e-9 {
            ticks.append(((first + index * step) * scale).rounded() / scale)
            index += 1
        }
        return ticks
    }

    /// A tick label: no trailing zeros, at most 4 significant decimals.
    public static func label(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e9 { return String(Int(value)) }
        var text = String(format: "%.4g", value)
        if text.contains(".") && !text.contains("e") {
            while text.hasSuffix("0") { text.removeLast() }
            if text.hasSuffix(".") { text.removeLast() }
        }
        return text
    }
}
