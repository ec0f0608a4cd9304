package main

import "runtime/debug"

// version is set at build time with -ldflags "-X main.version=...", as the Makefile,
// the Dockerfile and scripts/release.sh do; a plain go build leaves "dev", and init
// replaces it with what the Go toolchain recorded in the binary.
var version = "dev"

func init() {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		info = nil
	}
	version = buildVersion(version, info)
}

// buildVersion is the version a binary reports: stamped, the one set with -ldflags
// when it is not "dev"; else the main module's version from the build info (a
// tagged go install, or the pseudo-version go build records from the checkout);
// else the VCS revision, shortened, with "-dirty" when the tree had changes; else
// "dev".
func buildVersion(stamped string, info *debug.BuildInfo) string {
	if stamped != "" && stamped != "dev" {
		return stamped
	}
	if info == nil {
		return "dev"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev string
	var modified bool
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified {
		rev += "-dirty"
	}
	return rev
}
