package healthcheckextension // import "github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension"

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"strconv"
	"strings"

	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/confmap"
	"go.uber.org/zap"
)

var _ confmap.Unmarshaler = (*Config)(nil)

// Unmarshal decodes conf and rejects unknown keys.
//
// confmap decodes every struct that squashes an Unmarshaler (here
// confighttp.ServerConfig) with unknown keys ignored, nested ones included, so
// a typo such as `readiness: {on_delivery_failures: true}` would silently keep
// gating off. After the normal decode, the keys that are not the server's are
// decoded again, strictly, into a struct holding only our fields.
//
// Contrib's legacy `port` (the stock collector's guides still write
// `health_check: {port: 13133}`) is taken out first and becomes the endpoint
// (see legacyPort).
func (c *Config) Unmarshal(conf *confmap.Conf) error {
	raw := conf.ToStringMap()
	port, hasPort := raw[legacyPortKey]
	if hasPort {
		delete(raw, legacyPortKey)
		conf = confmap.NewFromStringMap(raw)
	}
	if err := conf.Unmarshal(c); err != nil {
		return err
	}
	own := map[string]any{}
	for k, v := range raw {
		if !serverKeys[k] {
			own[k] = v
		}
	}
	if err := confmap.NewFromStringMap(own).Unmarshal(ownFields(c)); err != nil {
		return err
	}
	if hasPort {
		return c.applyLegacyPort(port, conf.IsSet("endpoint"))
	}
	return nil
}

// legacyPortKey is contrib's health_check key from before `endpoint`: "port
// to expose HTTP health information", listening on every interface. Contrib
// has removed it; configs written for the stock collector still have it.
const legacyPortKey = "port"

// legacyPortHost is where contrib listened with `port`: every interface.
const legacyPortHost = "0.0.0.0"

var (
	errLegacyPortValue = errors.New(`health_check: port must be a TCP port (1-65535); better, replace it with endpoint: "0.0.0.0:13133"`)
	errLegacyPortBoth  = errors.New("health_check: both endpoint and contrib's removed port are set: remove port")
)

// applyLegacyPort makes port the endpoint, on every interface as contrib did.
// With endpoint set as well the config is ambiguous, and refused.
func (c *Config) applyLegacyPort(port any, endpointSet bool) error {
	if endpointSet {
		return errLegacyPortBoth
	}
	n, err := parsePort(port)
	if err != nil {
		return fmt.Errorf("%w, got %v", errLegacyPortValue, port)
	}
	c.ServerConfig.NetAddr.Endpoint = net.JoinHostPort(legacyPortHost, strconv.Itoa(n))
	c.legacyPort = n
	return nil
}

// parsePort reads a port from YAML (an int) or from ${env:...} (a string).
func parsePort(v any) (int, error) {
	var n int
	switch p := v.(type) {
	case int:
		n = p
	case int64:
		n = int(p)
	case uint64:
		if p > 65535 {
			return 0, errLegacyPortValue
		}
		n = int(p)
	case string:
		var err error
		if n, err = strconv.Atoi(strings.TrimSpace(p)); err != nil {
			return 0, err
		}
	default:
		return 0, errLegacyPortValue
	}
	if n < 1 || n > 65535 {
		return 0, errLegacyPortValue
	}
	return n, nil
}

// warnLegacyPort tells, once per start, what to write instead of port.
func (c *Config) warnLegacyPort(logger *zap.Logger) {
	if c.legacyPort == 0 {
		return
	}
	ep := c.ServerConfig.NetAddr.Endpoint
	logger.Warn(fmt.Sprintf(`health_check: "port: %d" is contrib's removed key, read as endpoint %q (every interface, as contrib did). `+
		`Write endpoint: %q instead, or endpoint: "${env:MY_POD_IP}:%d" to listen on the pod IP only`, c.legacyPort, ep, ep, c.legacyPort),
		zap.String("endpoint", ep))
}

// serverKeys are the top-level keys confighttp.ServerConfig owns.
var serverKeys = func() map[string]bool {
	keys := map[string]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
			if strings.Contains(opts, "squash") && f.Type.Kind() == reflect.Struct {
				walk(f.Type)
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			keys[name] = true
		}
	}
	walk(reflect.TypeFor[confighttp.ServerConfig]())
	return keys
}()

// ownFields returns a pointer to a fresh struct with Config's fields except
// the server, initialized from c, built by reflection so it cannot drift.
func ownFields(c *Config) any {
	t := reflect.TypeFor[Config]()
	var fields []reflect.StructField
	var values []reflect.Value
	cv := reflect.ValueOf(c).Elem()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() || f.Name == "ServerConfig" {
			continue
		}
		fields = append(fields, f)
		values = append(values, cv.Field(i))
	}
	v := reflect.New(reflect.StructOf(fields))
	for i, fv := range values {
		v.Elem().Field(i).Set(fv)
	}
	return v.Interface()
}
