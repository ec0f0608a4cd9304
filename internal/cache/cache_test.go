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
