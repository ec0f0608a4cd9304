package sqlname

import (
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	for s, want := range map[string]bool{
		"unicorntable": true, "_t": true, "T2": true, strings.Repeat("t", 64): true,
		"": false, "2t": false, "a`b": false, "d.t": false, "a b": false, "tä": false, strings.Repeat("t", 65): false,
		`a"b`: false,
	} {
		if got := Valid(s); got != want {
			t.Errorf("Valid(%q) = %v, want %v", s, got, want)
		}
	}
}
