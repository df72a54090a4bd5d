//go:build tools

// Package tools pins helm, which the webhook install tests use to render upstream's windows-gmsa chart.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
