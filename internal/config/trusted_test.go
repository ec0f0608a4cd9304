package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseTrustedProxies(t *testing.T) {
	c, err := Parse("server.ini", []byte("TrustedProxies = 10.1.2.3/8, 192.168.1.7 ,2001:db8::/32,\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("192.168.1.7/32"),
		netip.MustParsePrefix("2001:db8::/32"),
	}
	if !slices.Equal(c.TrustedProxies, want) {
		t.Fatalf("TrustedProxies = %v, want %v", c.TrustedProxies, want)
	}
	var got string
	for _, e := range c.Entries() {
		if e.Key == "TrustedProxies" {
			got = e.Value
		}
	}
	if got != "10.0.0.0/8,192.168.1.7/32,2001:db8::/32" {
		t.Fatalf("entry %q", got)
	}
	back, err := Parse("server.ini", []byte("TrustedProxies = "+got))
	if err != nil || !slices.Equal(back.TrustedProxies, want) {
		t.Fatalf("the entry does not read back: %v %v", back.TrustedProxies, err)
	}
	if d := Default(); d.TrustedProxies != nil {
		t.Fatalf("default %v, want none", d.TrustedProxies)
	}
	for _, bad := range []string{"10.0.0.0/33", "alb.internal", "10.0.0.0/8;", "fe80::1%eth0"} {
		_, err := Parse("server.ini", []byte("# head\nTrustedProxies = 10.0.0.0/16,"+bad+"\n"))
		if err == nil {
			t.Errorf("%q accepted", bad)
			continue
		}
		for _, want := range []string{"server.ini:2: ", "TrustedProxies", `"` + bad + `"`, "CIDR"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%q: message %q lacks %q", bad, err, want)
			}
		}
	}
}
