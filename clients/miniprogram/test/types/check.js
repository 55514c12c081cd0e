// The package as a user gets it: `npm pack`, check the tarball's files,
// unpack it into a scratch project's node_modules, load it, and compile the
// type tests (wx.ts, taro.ts, uni.ts) against it with `tsc --strict` under
// the three module resolutions Taro, uni-app and plain TypeScript projects
// use. Needs `npm ci` in clients/miniprogram first (TypeScript and the
// typings are its devDependencies).
//
//   node clients/miniprogram/test/types/check.js

'use strict';

const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const PKG_DIR = path.resolve(__dirname, '..', '..');
const TYPES_DIR = __dirname;
const NODE_MODULES = path.join(PKG_DIR, 'node_modules');
const pkg = JSON.parse(fs.readFileSync(path.join(PKG_DIR, 'package.json'), 'utf8'));

const EXPECTED_FILES = ['LICENSE-APACHE', 'LICENSE-MIT', 'README.md', 'package.json', 'wxlogin.d.ts', 'wxlogin.js'];

for (const dep of Object.keys(pkg.devDependencies)) {
  if (!fs.existsSync(path.join(NODE_MODULES, dep, 'package.json'))) {
    console.error(`${dep} is not installed: run \`npm ci\` in ${PKG_DIR}`);
    process.exit(1);
  }
}

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'wxlogin-types-'));
let failures = 0;
let passes = 0;
try {
  // npm pack: the tarball and the files in it.
  const packed = JSON.parse(
    execFileSync('npm', ['pack', '--json', '--pack-destination', scratch], { cwd: PKG_DIR, encoding: 'utf8' }),
  )[0];
  const files = packed.files.map((f) => f.path).sort();
  assert.deepEqual(files, EXPECTED_FILES, `npm pack holds ${files.join(', ')}`);
  console.log(`ok - npm pack: ${packed.filename} (${packed.size} bytes) holds ${files.join(', ')}`);
  passes += 1;

  // Unpacked where a project would have it.
  const project = path.join(scratch, 'project');
  const installed = path.join(project, 'node_modules', pkg.name);
  fs.mkdirSync(installed, { recursive: true });
  execFileSync('tar', ['-xzf', path.join(scratch, packed.filename), '-C', installed, '--strip-components=1']);
  for (const dep of Object.keys(pkg.devDependencies)) {
    const link = path.join(project, 'node_modules', dep);
    fs.mkdirSync(path.dirname(link), { recursive: true });
    fs.symlinkSync(path.join(NODE_MODULES, dep), link, 'dir');
  }
  for (const f of fs.readdirSync(TYPES_DIR).filter((f) => f.endsWith('.ts'))) {
    fs.copyFileSync(path.join(TYPES_DIR, f), path.join(project, f));
  }

  // It loads (CommonJS, by name) and exports what the types say.
  const loaded = execFileSync(
    process.execPath,
    ['-e', `const m = require('${pkg.name}'); console.log(Object.keys(m).sort().join(','))`],
    { cwd: project, encoding: 'utf8' },
  ).trim();
  assert.equal(loaded, 'WxLoginError,createClient');
  console.log(`ok - require('${pkg.name}') from the unpacked tarball exports ${loaded}`);
  passes += 1;

  const tsc = path.join(NODE_MODULES, 'typescript', 'bin', 'tsc');
  const resolutions = [
    { module: 'commonjs', moduleResolution: 'node10' },
    { module: 'node16', moduleResolution: 'node16' },
    { module: 'esnext', moduleResolution: 'bundler' },
  ];
  const units = [
    // A mini program has no DOM; uni-app's types need it (its templates include it).
    { name: 'wx', files: ['wx.ts', 'taro.ts'], types: ['miniprogram-api-typings'], lib: ['es2020'] },
    { name: 'uni', files: ['uni.ts'], types: ['@dcloudio/types'], lib: ['es2020', 'dom'] },
  ];
  for (const res of resolutions) {
    for (const unit of units) {
      const config = path.join(project, `tsconfig.${unit.name}.${res.moduleResolution}.json`);
      fs.writeFileSync(
        config,
        JSON.stringify(
          {
            compilerOptions: {
              strict: true,
              noEmit: true,
              noUnusedLocals: false,
              skipLibCheck: false,
              target: 'es2020',
              lib: unit.lib,
              module: res.module,
              moduleResolution: res.moduleResolution,
              types: unit.types,
            },
            files: unit.files,
          },
          null,
          2,
        ),
      );
      const label = `tsc --strict (${unit.types.join(', ')}; ${res.module}/${res.moduleResolution}) on ${unit.files.join(', ')}`;
      try {
        execFileSync(process.execPath, [tsc, '-p', config], { cwd: project, encoding: 'utf8', stdio: 'pipe' });
        console.log(`ok - ${label}`);
        passes += 1;
      } catch (err) {
        failures += 1;
        console.log(`not ok - ${label}\n${err.stdout || ''}${err.stderr || ''}`);
      }
    }
  }
} finally {
  fs.rmSync(scratch, { recursive: true, force: true });
}
console.log(`${passes} passed, ${failures} failed`);
process.exit(failures === 0 ? 0 : 1);
