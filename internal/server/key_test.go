package server

import "testing"

func TestMatchKey(t *testing.T) {
	tests := map[string]struct {
		key   string
		texts []string
		want  bool
	}{
		"no pattern matches nothing":                  {"H@XX0RR333DDD", nil, false},
		"a substring of the key matches":              {"xH@XX0RR333DDDx", []string{"H@XX0RR333DDD"}, true},
		"a substring of the decoded base64 matches":   {"SUNhbkhhelVuaWNvcm4/LTg5OTk=", []string{"Unicorn"}, true},
		"URL-safe base64 is not decoded":              {"SUNhbkhhelVuaWNvcm4_LTg5OTk", []string{"Unicorn"}, false},
		"raw standard base64 is decoded":              {"VW5pY29ybg", []string{"Unicorn"}, true},
		"any of several patterns matches":             {"testing", []string{"nope", "test"}, true},
		"a key that is not base64 matches only as is": {"3615-7184-2117", []string{"Unicorn"}, false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := MatchKey(tt.key, tt.texts...); got != tt.want {
				t.Errorf("MatchKey(%q, %q) = %v, want %v", tt.key, tt.texts, got, tt.want)
			}
		})
	}
}
