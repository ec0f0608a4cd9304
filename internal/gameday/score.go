package gameday

import (
	"fmt"
	"time"
)

// CostBlock is the unit the event's runbook charges an instance for: every started
// 15 minutes costs CostPer15m, the first one at the start.
const CostBlock = 15 * time.Minute

// MaxEvents is how many score events a snapshot and the summary keep (the newest).
const MaxEvents = 50

// withDefaults fills what the zero value leaves out.
func (s Scoring) withDefaults() Scoring {
	if s == (Scoring{}) {
		return DefaultScoring()
	}
	if s.TrendWindow <= 0 {
		s.TrendWindow = DefaultTrendWindow
	}
	return s
}

// Points returns the points one request earns: Correct (plus FastBonus when its
// latency is at most Fast), Wrong, Error or Timeout; a canceled request earns none.
func (s Scoring) Points(o Outcome, latency time.Duration) float64 {
	switch o {
	case Correct:
		if s.FastBonus != 0 && latency <= s.Fast {
			return s.Correct + s.FastBonus
		}
		return s.Correct
	case Wrong:
		return s.Wrong
	case Error:
		return s.Error
	case Timeout:
		return s.Timeout
	}
	return 0
}

// BlocksStarted is the number of 15-minute blocks started after elapsed: 1 at the
// start, 2 from 15:00 on, and so on.
func BlocksStarted(elapsed time.Duration) int {
	if elapsed < 0 {
		return 0
	}
	return int(elapsed/CostBlock) + 1
}

// Cost is the dollars charged after elapsed for instances at costPer15m each per
// started 15 minutes.
func Cost(elapsed time.Duration, instances int, costPer15m float64) float64 {
	return float64(instances) * costPer15m * float64(BlocksStarted(elapsed))
}

// CostPerMinute is the running cost in points per minute, which the trend subtracts:
// the charge per block spread over the block, so that the trend does not jump every
// 15 minutes but still says whether the fleet earns more than it costs.
func (s Scoring) CostPerMinute(instances int, costPer15m float64) float64 {
	return float64(instances) * costPer15m * s.PointsPerDollar / CostBlock.Minutes()
}

// Trend is points per minute: points earned over span, less costPerMinute.
func Trend(points float64, span time.Duration, costPerMinute float64) float64 {
	if span <= 0 {
		return 0
	}
	return points/span.Minutes() - costPerMinute
}

// costReason is the score event of one charged block.
func costReason(instances int, costPer15m float64, block int) string {
	from := time.Duration(block-1) * CostBlock
	noun := "instances"
	if instances == 1 {
		noun = "instance"
	}
	return fmt.Sprintf("cost: %d %s × $%g for the 15 minutes from %s", instances, noun, costPer15m, clock(from))
}

// clock formats d as m:ss (h:mm:ss from an hour on).
func clock(d time.Duration) string {
	d = d.Truncate(time.Second)
	h, m, s := int(d/time.Hour), int(d%time.Hour/time.Minute), int(d%time.Minute/time.Second)
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%d:%02d", m, s)
}
