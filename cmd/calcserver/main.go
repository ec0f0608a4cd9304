// Command calcserver answers GET /calc?input=<key> like the unicorn server of AWS
// GameDay and the WorldSkills Cloud Computing contests. See the README.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	host, _ := os.Hostname()
	os.Exit(run(os.Args[1:], env{getenv: os.Getenv, stdout: os.Stdout, stderr: os.Stderr, host: host, signals: sig}))
}
