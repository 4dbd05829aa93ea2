package intake

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
)

// Metrics counts every delivery by outcome, rejections included, so that a misconfigured secret
// or a flood of bad requests shows up on a dashboard rather than only in logs.
type Metrics struct {
	deliveries *prometheus.CounterVec
	duration   *prometheus.HistogramVec
}

// NewMetrics registers the intake metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slipway_webhook_deliveries_total",
			Help: "Webhook deliveries by forge and outcome (created, duplicate, ignored, unauthenticated, invalid, too_large, error).",
		}, []string{"forge", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "slipway_webhook_duration_seconds",
			Help:    "Time from request to answer.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"forge"}),
	}
	for _, c := range []prometheus.Collector{m.deliveries, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) observe(f v1alpha1.Forge, outcome string, d time.Duration) {
	m.deliveries.WithLabelValues(string(f), outcome).Inc()
	m.duration.WithLabelValues(string(f)).Observe(d.Seconds())
}
