package main

import (
	"context"
	"errors"
)

func cmdDemo(ctx context.Context, g *globals, args []string) error {
	return errors.New("demo: not wired yet")
}
