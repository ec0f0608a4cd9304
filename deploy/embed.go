// Package deploy holds the deployment files (compose, ECS, nginx, server.ini) and
// embeds those a shipped binary renders at run time.
package deploy

import _ "embed"

// NginxConf is nginx.conf, the balancer in front of the compose replicas. The fleet
// harness (internal/fleet) renders it for loopback instances, so a benchmark or a test
// runs the very configuration teams deploy.
//
//go:embed nginx.conf
var NginxConf string
