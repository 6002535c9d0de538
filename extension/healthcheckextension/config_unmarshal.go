package healthcheckextension // import "github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension"

import (
	"reflect"
	"strings"

	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/confmap"
)

var _ confmap.Unmarshaler = (*Config)(nil)

// Unmarshal decodes conf and rejects unknown keys.
//
// confmap decodes every struct that squashes an Unmarshaler (here
// confighttp.ServerConfig) with unknown keys ignored, nested ones included, so
// a typo such as `readiness: {on_delivery_failures: true}` would silently keep
// gating off. After the normal decode, the keys that are not the server's are
// decoded again, strictly, into a struct holding only our fields.
func (c *Config) Unmarshal(conf *confmap.Conf) error {
	if err := conf.Unmarshal(c); err != nil {
		return err
	}
	own := map[string]any{}
	for k, v := range conf.ToStringMap() {
		if !serverKeys[k] {
			own[k] = v
		}
	}
	return confmap.NewFromStringMap(own).Unmarshal(ownFields(c))
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
