module github.com/open-telemetry/opentelemetry-lambda/collector/lambdalifecycle

go 1.26.1

require github.com/stretchr/testify v1.12.1

require go.yaml.in/yaml/v3 v3.0.5 // indirect
