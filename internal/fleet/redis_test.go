package fleet

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisKeys counts the unicorn:* keys in the Redis at addr.
func redisKeys(addr string) (int, error) {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	keys, err := c.Keys(ctx, "unicorn:*").Result()
	if err != nil {
		return 0, fmt.Errorf("redis %s: KEYS unicorn:*: %w", addr, err)
	}
	return len(keys), nil
}
