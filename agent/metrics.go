package agent

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the agent's Prometheus metrics, in a registry of its own (so
// that several agents can live in one test process). Label values are
// bounded: methods outside the known set count as "unknown".
type metrics struct {
	registry *prometheus.Registry
	calls    map[string]rpcMetrics
	unknown  rpcMetrics
	builds   *prometheus.CounterVec
	duration *prometheus.HistogramVec
	aborts   prometheus.Counter
	watchdog prometheus.Counter
}

type rpcMetrics struct {
	ok, fault prometheus.Counter
	seconds   prometheus.Observer
}

var rpcMethodNames = []string{"echo", "info", "status", "proxy_info", "ensurepresent", "build", "abort", "clean"}

func newMetrics(state func() string) *metrics {
	reg := prometheus.NewRegistry()
	calls := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "buildd_agent_rpc_calls_total",
		Help: "XML-RPC calls by method and outcome (ok or fault).",
	}, []string{"method", "outcome"})
	seconds := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "buildd_agent_rpc_duration_seconds",
		Help:    "Time to answer an XML-RPC call, by method (ensurepresent includes the download).",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .1, 1, 10, 100, 1000},
	}, []string{"method"})
	m := &metrics{
		registry: reg,
		calls:    map[string]rpcMetrics{},
		builds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "buildd_agent_builds_total",
			Help: "Finished builds by manager tag and build status.",
		}, []string{"manager", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "buildd_agent_build_duration_seconds",
			Help:    "Time from build() to WAITING, by manager tag.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 16), // 1 s … 9 h
		}, []string{"manager"}),
		aborts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "buildd_agent_aborts_total",
			Help: "Builds aborted by the build master.",
		}),
		watchdog: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "buildd_agent_abort_timeouts_total",
			Help: "Aborted builds that did not stop within the abort timeout (BUILDERFAIL).",
		}),
	}
	for _, name := range append(rpcMethodNames, "unknown") {
		rm := rpcMetrics{
			ok:      calls.WithLabelValues(name, "ok"),
			fault:   calls.WithLabelValues(name, "fault"),
			seconds: seconds.WithLabelValues(name),
		}
		if name == "unknown" {
			m.unknown = rm
		} else {
			m.calls[name] = rm
		}
	}
	stateGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "buildd_agent_building",
		Help: "1 while a build is BUILDING or ABORTING, else 0.",
	}, func() float64 {
		if s := state(); s == BuilderBuilding || s == BuilderAborting {
			return 1
		}
		return 0
	})
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "buildd_agent_info",
		Help:        "The agent's version.",
		ConstLabels: prometheus.Labels{"version": Version},
	})
	info.Set(1)
	own := []prometheus.Collector{calls, seconds, m.builds, m.duration, m.aborts, m.watchdog, stateGauge, info}
	reg.MustRegister(own...)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Also in the default registry, for a metrics listener that serves
	// promhttp.Handler(): the first agent of the process wins (the daemon
	// has one; tests make many).
	for _, c := range own {
		if err := prometheus.DefaultRegisterer.Register(c); err != nil {
			break
		}
	}
	return m
}

// observeCall counts one XML-RPC call.
func (m *metrics) observeCall(method string, fault bool, d time.Duration) {
	if m == nil {
		return
	}
	rm, ok := m.calls[method]
	if !ok {
		rm = m.unknown
	}
	if fault {
		rm.fault.Inc()
	} else {
		rm.ok.Inc()
	}
	rm.seconds.Observe(d.Seconds())
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

func (m *metrics) buildFinished(manager string, status string, d time.Duration) {
	if m == nil {
		return
	}
	m.builds.WithLabelValues(manager, status).Inc()
	m.duration.WithLabelValues(manager).Observe(d.Seconds())
}

func (m *metrics) aborted() {
	if m != nil {
		m.aborts.Inc()
	}
}

func (m *metrics) abortTimedOut() {
	if m != nil {
		m.watchdog.Inc()
	}
}
