package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/gameday"
)

// CoalesceOptions configure Coalesce.
type CoalesceOptions struct {
	Calcserver string
	Clients    int           // concurrent requests for the one key
	WorkTime   time.Duration // the server's WorkTime (Cores 1, sleep mode)
	Rounds     int
	Dir        string
	Progress   io.Writer
}

// coalesceRound is what one round measured.
type coalesceRound struct {
	clients           int
	jobs, joins       float64 // deltas of the /metrics counters
	miss, shared, hit int     // X-Cache of the answers
	correct           int
	took              latency
}

// Coalesce starts calcserver (Cores 1, QueueSize 5, o.WorkTime in sleep mode, the
// memory tier) and, each round, sends o.Clients requests for one new key at once, each
// on a connection of its own opened beforehand: the server must run exactly one job
// (calcserver_job_duration_seconds_count goes up by one) and answer every request
// 200 with the right answer.
func Coalesce(ctx context.Context, o CoalesceOptions) (report, []coalesceRound, error) {
	if o.Clients < 1 || o.Rounds < 1 || o.WorkTime <= 0 {
		return report{}, nil, fmt.Errorf("coalesce: need clients ≥ 1, rounds ≥ 1 and a positive work time (got %d, %d, %v)", o.Clients, o.Rounds, o.WorkTime)
	}
	if _, err := raiseOpenFiles(); err != nil {
		return report{}, nil, err
	}
	s, err := startServer(ctx, o.Calcserver, o.Dir, "Cores = 1", "QueueSize = 5",
		fmt.Sprintf("WorkTime = %v", o.WorkTime), "WorkMode = sleep")
	if err != nil {
		return report{}, nil, err
	}
	var rep report
	rounds := make([]coalesceRound, 0, o.Rounds)
	tag := time.Now().UnixNano()
	for i := range o.Rounds {
		r, err := coalesceOnce(ctx, s, o, fmt.Sprintf("coalesce-%d-%d", tag, i), &rep)
		if err != nil {
			_ = s.stop()
			return report{}, nil, fmt.Errorf("coalesce round %d: %w", i+1, err)
		}
		rounds = append(rounds, r)
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "coalesce round %d/%d: %d requests, %g job(s), %d MISS, %d SHARED, %d HIT, %d correct\n",
				i+1, o.Rounds, r.clients, r.jobs, r.miss, r.shared, r.hit, r.correct)
		}
	}
	if err := s.stop(); err != nil {
		return report{}, nil, err
	}
	coalesceTables(&rep, o, rounds)
	return rep, rounds, nil
}

func coalesceOnce(ctx context.Context, s *server, o CoalesceOptions, key string, rep *report) (coalesceRound, error) {
	conns, err := dialAll(ctx, s.Addr(), o.Clients, dialParallel)
	if err != nil {
		return coalesceRound{}, err
	}
	defer closeAll(conns)
	before, err := s.metrics(ctx)
	if err != nil {
		return coalesceRound{}, err
	}
	target := "/calc?input=" + url.QueryEscape(key)
	answers := make([]answer, o.Clients)
	errs := make([]error, o.Clients)
	release := make(chan struct{})
	var wg sync.WaitGroup
	for i := range o.Clients {
		wg.Go(func() {
			<-release
			answers[i], errs[i] = conns[i].get(target, o.WorkTime+30*time.Second)
			conns[i].close()
		})
	}
	close(release)
	wg.Wait()
	after, err := s.metrics(ctx)
	if err != nil {
		return coalesceRound{}, err
	}

	const jobs, joins = "calcserver_job_duration_seconds_count", "calcserver_singleflight_joins_total"
	r := coalesceRound{clients: o.Clients, jobs: after[jobs] - before[jobs], joins: after[joins] - before[joins]}
	var took []time.Duration
	var bad []string
	for i, a := range answers {
		switch {
		case errs[i] != nil:
			bad = append(bad, errs[i].Error())
			continue
		case a.status != http.StatusOK:
			bad = append(bad, fmt.Sprintf("answered %d: %.200q", a.status, a.body))
			continue
		case !calc.Verify(calc.Token, 1, []byte(key), a.body):
			bad = append(bad, gameday.WrongReason(calc.Token, 1, key, a.body))
			continue
		}
		r.correct++
		took = append(took, a.took)
		switch c := a.header.Get("X-Cache"); c {
		case "MISS":
			r.miss++
		case "SHARED":
			r.shared++
		case "HIT":
			r.hit++
		default:
			bad = append(bad, fmt.Sprintf("X-Cache %q (want MISS, SHARED or HIT)", c))
		}
	}
	r.took = latencies(took)
	if len(bad) > 0 {
		rep.failf("%d of %d requests for key %s were not answered correctly; the first: %s", len(bad), o.Clients, key, bad[0])
	}
	if r.jobs != 1 || r.miss != 1 {
		rep.failf("%d concurrent requests for key %s ran %g jobs (%d answered MISS); want exactly one", o.Clients, key, r.jobs, r.miss)
	}
	if int(r.joins) != r.shared {
		rep.failf("key %s: %d answers say SHARED but %s rose by %g", key, r.shared, joins, r.joins)
	}
	return r, nil
}

func coalesceTables(rep *report, o CoalesceOptions, rounds []coalesceRound) {
	t := table{
		title: fmt.Sprintf("Coalescing: %d concurrent requests for one new key, each on its own connection; Cores 1, WorkTime %v (sleep)",
			o.Clients, o.WorkTime),
		header: []string{"round", "jobs", "MISS", "SHARED", "HIT", "singleflight joins", "correct 200s", "p50 (ms)", "p99 (ms)", "max (ms)"},
	}
	exact, allCorrect := 0, 0
	for i, r := range rounds {
		t.rows = append(t.rows, []string{fmt.Sprint(i + 1), num(r.jobs), fmt.Sprint(r.miss), fmt.Sprint(r.shared), fmt.Sprint(r.hit),
			num(r.joins), fmt.Sprintf("%d of %d", r.correct, r.clients), ms(r.took.p50), ms(r.took.p99), ms(r.took.max)})
		if r.jobs == 1 {
			exact++
		}
		if r.correct == r.clients {
			allCorrect++
		}
	}
	rep.tables = append(rep.tables, t)
	n := len(rounds)
	rep.tables = append(rep.tables, table{
		header: []string{"target", "figure", "target", "verdict"},
		rows: [][]string{
			{"rounds with exactly one job", fmt.Sprintf("%d of %d", exact, n), "all",
				rep.target(exact == n, "exactly one job in %d of %d rounds", exact, n)},
			{"rounds with every answer 200 and correct", fmt.Sprintf("%d of %d", allCorrect, n), "all",
				rep.target(allCorrect == n, "every answer correct in %d of %d rounds", allCorrect, n)},
		},
	})
	rep.notes = append(rep.notes, "jobs is the rise of calcserver_job_duration_seconds_count, singleflight joins that of "+
		"calcserver_singleflight_joins_total; every body is checked against internal/calc. "+
		"A request that arrives after the job ended is a HIT: still one job.")
}
