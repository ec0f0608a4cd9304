package main

import (
	"errors"
	"fmt"
	"syscall"
)

// listenError explains a failure to listen on port in one line, with what to do
// about it: the two failures people meet are a port below 1024 for a user that is
// not root, and a port another process holds.
func listenError(port int, err error) error {
	switch {
	case errors.Is(err, syscall.EACCES) && port > 0 && port < 1024:
		return fmt.Errorf("cannot listen on port %d: permission denied: a port below 1024 needs root or the "+
			"CAP_NET_BIND_SERVICE capability, which the systemd unit of userdata/user-data.sh grants "+
			"(AmbientCapabilities=CAP_NET_BIND_SERVICE); or listen on a port from 1024 up: -port 8080, or Port = 8080 in server.ini", port)
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("cannot listen on port %d: permission denied", port)
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("cannot listen on port %d: address already in use: another process holds port %d "+
			"(ss -ltnp 'sport = :%d' names it); stop it, or choose another port with -port or Port in server.ini", port, port, port)
	}
	return err
}
