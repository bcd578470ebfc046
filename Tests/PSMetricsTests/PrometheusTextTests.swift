import PSMetrics
import XCTest

final class PrometheusTextTests: XCTestCase {
    func test_format_counterGaugeAndLabels_matchTheExpositionFormat() {
        let families = [
            MetricFamily.counter("swiftps_pushes_total", help: "Pushes.", 3),
            MetricFamily(
                name: "swiftps_worker_clock", help: "Clock\nper \\ worker.", kind: .gauge,
                samples: [
                    .init(labels: [.init("worker", "w\"1\\\n"), .init("rank", "0")], value: 12),
                    .init(labels: [.init("worker", "w2"), .init("rank", "1")], value: 0.25),
                ]),
        ]
        XCTAssertEqual(
            PrometheusText.format(families),
            """
            # HELP swiftps_pushes_total Pushes.
            # TYPE swiftps_pushes_total counter
            swiftps_pushes_total 3
            # HELP swiftps_worker_clock Clock\\nper \\\\ worker.
            # TYPE swiftps_worker_clock gauge
            swiftps_worker_clock{worker="w\\"1\\\\\\n",rank="0"} 12
            swiftps_worker_clock{worker="w2",rank="1"} 0.25

            """)
    }

    func test_histogram_bucketsAreCumulativeWithInfSumAndCount() {
        var histogram = Histogram(bounds: [0.1, 1])
        for value in [0.05, 0.1, 0.5, 3] { histogram.observe(value) }
        let text = PrometheusText.format([.histogram("swiftps_apply_seconds", help: "Apply.", histogram)])
        XCTAssertEqual(
            text,
            """
            # HELP swiftps_apply_seconds Apply.
            # TYPE swiftps_apply_seconds histogram
            swiftps_apply_seconds_bucket{le="0.1"} 2
            swiftps_apply_seconds_bucket{le="1"} 3
            swiftps_apply_seconds_bucket{le="+Inf"} 4
            swiftps_apply_seconds_sum 3.65
            swiftps_apply_seconds_count 4

            """)
    }

    func test_number_specialValues() {
        XCTAssertEqual(PrometheusText.number(.nan), "NaN")
        XCTAssertEqual(PrometheusText.number(.infinity), "+Inf")
        XCTAssertEqual(PrometheusText.number(-.infinity), "-Inf")
        XCTAssertEqual(PrometheusText.number(1e20), "1e+20")
        XCTAssertEqual(PrometheusText.number(-2), "-2")
    }

    func test_isValidName() {
        XCTAssertTrue(PrometheusText.isValidName("swiftps_a:b_total"))
        XCTAssertFalse(PrometheusText.isValidName("9lives"))
        XCTAssertFalse(PrometheusText.isValidName("a:b", label: true))
        XCTAssertFalse(PrometheusText.isValidName(""))
    }
}
