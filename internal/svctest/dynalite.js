// dynalite (github.com/architect/dynalite) in memory on a loopback port, for the tests:
// dynalite.go runs it as
//
//	node dynalite.js <the dynalite package's folder> <port>
//
// and waits for GET /svctest/pid to answer this process's id, so that it knows the
// port is its own. Everything else is dynalite's, except the two operations dynalite
// 4 lacks: it has no UpdateTimeToLive and answers DescribeTimeToLive with DISABLED
// whatever was asked. Those two are answered here as DynamoDB answers them, keeping
// each table's setting for as long as the table lives. Nothing is ever deleted for
// its TTL: DynamoDB itself deletes expired items lazily, up to days late, so a client
// must check expiry on read anyway.
'use strict'

const http = require('http')

const [dir, port] = process.argv.slice(2)
// Tables stay CREATING for a moment, as in DynamoDB, but not dynalite's default half
// second: a test waits for that on every table it creates.
const inner = require(dir)({ createTableMs: 50, deleteTableMs: 50, updateTableMs: 50 })
const handle = inner.listeners('request')[0]

// TTL settings by "<table>@<CreationDateTime>", so a table deleted and created again
// starts with TTL off, as in DynamoDB.
const ttl = new Map()

function send (res, status, body) {
  const data = JSON.stringify(body)
  res.writeHead(status, {
    'Content-Type': 'application/x-amz-json-1.0',
    'Content-Length': Buffer.byteLength(data),
    'x-amzn-RequestId': 'svctest',
  })
  res.end(data)
}

function validation (res, message) {
  send(res, 400, { __type: 'com.amazon.coral.validate#ValidationException', message })
}

// describeTable asks dynalite itself, with the caller's signature headers, so that a
// missing table is answered exactly as dynalite answers it.
function describeTable (req, name, cb) {
  const body = JSON.stringify({ TableName: name })
  const headers = {}
  for (const h of [ 'authorization', 'x-amz-date', 'x-amz-security-token' ]) {
    if (req.headers[h]) headers[h] = req.headers[h]
  }
  headers['content-type'] = 'application/x-amz-json-1.0'
  headers['x-amz-target'] = 'DynamoDB_20120810.DescribeTable'
  headers['content-length'] = Buffer.byteLength(body)
  const r = http.request({ host: '127.0.0.1', port: Number(port), method: 'POST', path: '/', headers }, (resp) => {
    const chunks = []
    resp.on('data', (c) => chunks.push(c))
    resp.on('end', () => {
      const text = Buffer.concat(chunks).toString()
      let parsed = {}
      try {
        parsed = JSON.parse(text)
      }
      catch {
        // Passed on as it is below.
      }
      cb(null, resp.statusCode, parsed)
    })
  })
  r.on('error', cb)
  r.end(body)
}

function timeToLive (req, res, op) {
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', () => {
    let data
    try {
      data = JSON.parse(Buffer.concat(chunks).toString() || '{}')
    }
    catch {
      return send(res, 400, { __type: 'com.amazon.coral.service#SerializationException' })
    }
    if (typeof data.TableName !== 'string' || data.TableName === '') {
      return validation(res, '1 validation error detected: Value null at \'tableName\' failed to satisfy constraint: Member must not be null')
    }
    describeTable(req, data.TableName, (err, status, described) => {
      if (err) return send(res, 500, { __type: 'com.amazonaws.dynamodb.v20120810#InternalServerError', message: String(err) })
      if (status !== 200) return send(res, status, described)
      const key = data.TableName + '@' + described.Table.CreationDateTime
      const cur = ttl.get(key)
      if (op === 'DescribeTimeToLive') {
        const desc = cur && cur.Enabled ?
          { TimeToLiveStatus: 'ENABLED', AttributeName: cur.AttributeName } :
          { TimeToLiveStatus: 'DISABLED' }
        return send(res, 200, { TimeToLiveDescription: desc })
      }
      const spec = data.TimeToLiveSpecification
      if (!spec || typeof spec.Enabled !== 'boolean' || typeof spec.AttributeName !== 'string' || spec.AttributeName === '') {
        return validation(res, 'TimeToLiveSpecification needs Enabled and AttributeName')
      }
      if (described.Table.TableStatus !== 'ACTIVE') {
        return send(res, 400, { __type: 'com.amazonaws.dynamodb.v20120810#ResourceInUseException', message: 'Table is being ' + described.Table.TableStatus.toLowerCase() + ': ' + data.TableName })
      }
      if (spec.Enabled && cur && cur.Enabled) return validation(res, 'TimeToLive is already enabled')
      if (!spec.Enabled && !(cur && cur.Enabled)) return validation(res, 'TimeToLive is already disabled')
      ttl.set(key, { Enabled: spec.Enabled, AttributeName: spec.AttributeName })
      send(res, 200, { TimeToLiveSpecification: spec })
    })
  })
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/svctest/pid') return res.end(String(process.pid))
  const op = String(req.headers['x-amz-target'] || '').split('.')[1]
  if (op === 'UpdateTimeToLive' || op === 'DescribeTimeToLive') return timeToLive(req, res, op)
  handle(req, res)
})
server.listen(Number(port), '127.0.0.1', () => {
  console.log('dynalite listening on 127.0.0.1:' + port)
})
