package cache

import (
	"context"
	"errors"
	"fmt"
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

// failing is a tier that cannot answer.
type failing struct{}

func (failing) Get(context.Context, string) (calc.Result, error) {
	return calc.Result{}, errors.New("down")
}
func (failing) Set(context.Context, string, calc.Result) error { return errors.New("down") }

func TestChainLooksUpInOrderAndFillsUpperTiers(t *testing.T) {
	upper, lower := NewMemory(10, 0), NewMemory(10, 0)
	t.Cleanup(upper.Close)
	t.Cleanup(lower.Close)
	c := NewChain(Tier{"upper", upper}, Tier{"broken", failing{}}, Tier{"lower", lower})
	ctx := context.Background()
	want := calc.Result{7}
	_ = lower.Set(ctx, "k", want)
	got, tier, err := c.Get(ctx, "k")
	if err != nil || got != want || tier != "lower" {
		t.Fatalf("Get = %x, %q, %v", got, tier, err)
	}
	if got, tier, _ := c.Get(ctx, "k"); tier != "upper" || got != want {
		t.Fatalf("second Get came from %q: upper tier was not filled", tier)
	}
	if err := c.Set(ctx, "j", want); err == nil {
		t.Fatal("Set hid the broken tier's error")
	}
	if _, err := lower.Get(ctx, "j"); err != nil {
		t.Fatal("Set skipped the tier after a broken one")
	}
	if _, _, err := NewChain().Get(ctx, "k"); !errors.Is(err, ErrMiss) {
		t.Fatalf("empty chain: %v", err)
	}
	if n := c.Names(); len(n) != 3 || n[0] != "upper" || n[2] != "lower" {
		t.Fatalf("Names = %v", n)
	}
}
