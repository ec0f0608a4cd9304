package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/calc"
)

func TestMemoryStoresAndMisses(t *testing.T) {
	m := NewMemory(100, 0)
	t.Cleanup(m.Close)
	ctx := context.Background()
	if _, err := m.Get(ctx, "k"); !errors.Is(err, ErrMiss) {
		t.Fatalf("empty cache: err %v, want ErrMiss", err)
	}
	want := calc.Sum(1, []byte("k"))
	if err := m.Set(ctx, "k", want); err != nil {
		t.Fatal(err)
	}
	got, err := m.Get(ctx, "k")
	if err != nil || got != want {
		t.Fatalf("Get = %x, %v", got, err)
	}
}

func TestMemoryIsBoundedBySize(t *testing.T) {
	m := NewMemory(50, 0)
	t.Cleanup(m.Close)
	ctx := context.Background()
	for i := range 1000 {
		_ = m.Set(ctx, fmt.Sprint(i), calc.Result{byte(i)})
	}
	m.c.CleanUp()
	if n := m.Len(); n > 50 {
		t.Fatalf("cache holds %d entries, bound is 50", n)
	}
}

func TestMemoryExpiresAfterTTL(t *testing.T) {
	m := NewMemory(10, 30*time.Millisecond)
	t.Cleanup(m.Close)
	ctx := context.Background()
	_ = m.Set(ctx, "k", calc.Result{1})
	if _, err := m.Get(ctx, "k"); err != nil {
		t.Fatalf("fresh entry: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := m.Get(ctx, "k"); errors.Is(err, ErrMiss) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("entry still served 5s after a 30ms TTL")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCheckOptions(t *testing.T) {
	for _, ok := range []struct {
		version      int
		ttl, timeout time.Duration
	}{{1, 0, 0}, {calc.MaxVersion, time.Hour, time.Second}} {
		if err := CheckOptions(ok.version, ok.ttl, ok.timeout); err != nil {
			t.Errorf("CheckOptions(%d, %v, %v) = %v, want nil", ok.version, ok.ttl, ok.timeout, err)
		}
	}
	for _, bad := range []struct {
		version      int
		ttl, timeout time.Duration
		want         string
	}{
		{0, 0, 0, "version 0 out of range 1..1000000000"},
		{calc.MaxVersion + 1, 0, 0, "version 1000000001 out of range"},
		{1, -time.Second, 0, "negative TTL -1s"},
		{1, 0, -time.Millisecond, "negative timeout -1ms"},
	} {
		err := CheckOptions(bad.version, bad.ttl, bad.timeout)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("CheckOptions(%d, %v, %v) = %v, want an error containing %q", bad.version, bad.ttl, bad.timeout, err, bad.want)
		}
	}
}
